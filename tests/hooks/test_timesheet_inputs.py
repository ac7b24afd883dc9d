"""Timesheet inputs read from the GitLab stand-in's seed: timelogs by GraphQL, approvals by REST."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ps_integrations.domain.timesheet_approvals import ApprovalLabels, approved_periods, read_approval
from ps_integrations.domain.timesheet_entries import to_entries
from ps_integrations.domain.timesheets import totals
from ps_integrations.hooks.gitlab import GitLabHook, TimelogListing, timelog_record
from ps_integrations.jobs.timesheets.reads import gitlab_capabilities, query_range, read_approval_issues

GROUP = "professional-services"
ENGAGEMENTS = "professional-services/engagements"


def fetch_timelogs(hook: GitLabHook, group: str, first: date, last: date, with_epic: bool = True) -> TimelogListing:
    return hook.list_timelogs(hook.group_gid(group), *query_range(first, last), with_epic=with_epic)


@pytest.fixture
def hook(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(sandbox.airflow_connections()["gitlab_default"]))
    return GitLabHook()


def test_a_week_of_timelogs_becomes_unrounded_entries_in_the_business_time_zone(hook, sandbox):
    monday, sunday = date(2026, 10, 19), date(2026, 10, 25)
    listing = fetch_timelogs(hook, GROUP, monday, sunday)
    nodes = listing.timelogs
    entries, findings = to_entries(nodes, "Europe/Berlin", ENGAGEMENTS, monday, sunday, today=date(2026, 11, 21))

    assert entries and all(monday <= entry.day <= sunday for entry in entries)
    assert listing.pages == -(-len(nodes) // 100)
    per_engineer = totals(entries).by_engineer
    assert len(per_engineer) == 17
    assert all(Decimal(20) <= hours <= Decimal(48) for hours in per_engineer.values())
    assert {entry.category for entry in entries} <= {
        "Project Work",
        "PS Internal",
        "Internal Assisted",
        "Global Company Meetings",
        "PTO/Holidays",
    }
    backend = sandbox.standin("gitlab").backend
    berlin = ZoneInfo("Europe/Berlin")
    week_seconds = sum(
        t.time_spent for t in backend.timelogs.values() if monday <= t.spent_at.astimezone(berlin).date() <= sunday
    )
    assert sum(entry.seconds for entry in entries) == week_seconds  # nothing rounded away before the export
    assert all(f.problem.startswith("time on a closed engagement") for f in findings)


def test_seeded_approvals_include_untrusted_ones(hook):
    engineers = {
        user.username for user in hook.client.users.list(get_all=True) if user.username.split(".")[-1].startswith("ps")
    }
    issues = read_approval_issues(hook, "professional-services/time-tracking", ApprovalLabels())
    approvals = [read_approval(issue, ApprovalLabels(), engineers) for issue in issues]

    untrusted = [a for a in approvals if not a.trusted]
    assert {a.problem.split(":")[0].split(" ")[0] for a in untrusted} >= {"approval", "no", "finance-ops"}
    released = approved_periods(approvals, release_level=2)
    assert released and all(a.level >= 2 for a in released.values())


# --- issue #20 -------------------------------------------------------------------------------------------
def node(timelog_id: int, spent_at: str, seconds: int = 3600, title: str | None = "PS Internal"):
    return timelog_record(
        {
            "id": f"gid://gitlab/Timelog/{timelog_id}",
            "spentAt": spent_at,
            "timeSpent": seconds,
            "user": {"username": "amara.ps1"},
            "issue": {"webUrl": "https://x/issues/1", "state": "opened", "epic": {"title": title} if title else None},
            "project": {"fullPath": "professional-services/time-tracking"},
        }
    )


def test_future_dated_time_is_a_finding_and_no_entry():
    nodes = [node(1, "2026-11-23T08:00:00.000Z"), node(2, "2026-11-26T10:00:00.000Z", 3 * 3600)]
    entries, findings = to_entries(
        nodes, "UTC", ENGAGEMENTS, date(2026, 11, 23), date(2026, 11, 29), date(2026, 11, 23)
    )
    assert [entry.timelog_id for entry in entries] == ["1"]
    [finding] = findings
    assert (finding.timelog_id, finding.kind) == ("2", "future_dated")
    assert "180 min" in finding.problem


@pytest.mark.parametrize(
    ("spent_at", "server", "business", "day"),
    [
        # /spend 3h 2026-10-10 on a server in Auckland (NZDT, +13): stored at its midnight, 11:00 UTC the day before
        ("2026-10-09T11:00:00.000Z", "Pacific/Auckland", "UTC", date(2026, 10, 10)),
        ("2026-10-09T11:00:00.000Z", "Pacific/Auckland", "America/New_York", date(2026, 10, 10)),
        # the same instant from a UTC server is a timed entry: its business-local date
        ("2026-10-09T11:00:00.000Z", "UTC", "Pacific/Auckland", date(2026, 10, 10)),
        ("2026-10-09T11:00:00.000Z", "UTC", "America/New_York", date(2026, 10, 9)),
        # a date-only entry from a UTC server keeps its day west of UTC too
        ("2026-10-10T00:00:00.000Z", "UTC", "America/New_York", date(2026, 10, 10)),
        ("2026-10-10T00:00:01.000Z", "UTC", "America/New_York", date(2026, 10, 9)),  # timed: 20:00:01 on the 9th
        ("2026-10-10T00:00:00+00:00", "UTC", "America/New_York", date(2026, 10, 10)),
    ],
)
def test_date_only_entries_keep_the_server_day(spent_at, server, business, day):
    entries, _ = to_entries(
        [node(1, spent_at)],
        business,
        ENGAGEMENTS,
        date(2026, 10, 1),
        date(2026, 10, 31),
        date(2026, 11, 1),
        None,
        server,
    )
    assert [entry.day for entry in entries] == [day]


def test_timelogs_on_two_pages_count_once(hook, sandbox):
    sandbox.standin("gitlab").backend.timelog_page_overlap = 2
    listing = fetch_timelogs(hook, GROUP, date(2026, 10, 19), date(2026, 10, 25))
    assert len({t.id for t in listing.timelogs}) == len(listing.timelogs)
    assert listing.duplicates == 2 * (listing.pages - 1) > 0


def test_the_instance_says_whether_issues_have_epics(hook, sandbox):
    assert gitlab_capabilities(hook).issue_epic is True
    sandbox.standin("gitlab").backend.edition = "free"
    free = gitlab_capabilities(hook)
    assert free.issue_epic is False
    nodes = fetch_timelogs(hook, GROUP, date(2026, 10, 19), date(2026, 10, 25), free.issue_epic).timelogs
    entries, _ = to_entries(nodes, "UTC", ENGAGEMENTS, date(2026, 10, 19), date(2026, 10, 25), date(2026, 11, 21))
    assert "Uncategorised" not in {entry.category for entry in entries}  # the seed's category labels
    assert {entry.category for entry in entries} >= {"Project Work", "PS Internal"}


def test_a_timelog_gitlab_sends_without_spent_at_is_a_record_with_no_date():
    """``Timelog.spentAt`` is nullable in GitLab's schema (``null: true``): the record says "no date"
    ("") instead of failing the whole fetch; the roll-up names it."""
    assert node(7, None).spent_at == ""  # type: ignore[arg-type]
    assert node(8, "2026-11-23T08:00:00.000Z").spent_at == "2026-11-23T08:00:00.000Z"
