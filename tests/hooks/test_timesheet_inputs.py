"""Timesheet inputs read from the GitLab stand-in's seed: timelogs by GraphQL, approvals by REST."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ps_integrations.domain.timesheets import ApprovalLabels, approved_periods, read_approval, totals
from ps_integrations.hooks.gitlab import GitLabHook
from ps_integrations.jobs.timesheets import fetch_approval_issues, fetch_timelogs, to_entries

GROUP = "professional-services"
ENGAGEMENTS = "professional-services/engagements"


@pytest.fixture
def hook(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(sandbox.airflow_connections()["gitlab_default"]))
    return GitLabHook()


def test_a_week_of_timelogs_becomes_unrounded_entries_in_the_business_time_zone(hook, sandbox):
    monday, sunday = date(2026, 10, 19), date(2026, 10, 25)
    nodes = fetch_timelogs(hook, GROUP, monday, sunday)
    entries, findings = to_entries(nodes, "Europe/Berlin", ENGAGEMENTS, monday, sunday, today=date(2026, 11, 21))

    assert entries and all(monday <= entry.day <= sunday for entry in entries)
    assert hook.graphql_pages == -(-len(nodes) // 100)
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
    issues = fetch_approval_issues(hook, "professional-services/time-tracking", ApprovalLabels())
    approvals = [read_approval(issue, ApprovalLabels(), engineers) for issue in issues]

    untrusted = [a for a in approvals if not a.trusted]
    assert {a.problem.split(":")[0].split(" ")[0] for a in untrusted} >= {"approval", "no", "finance-ops"}
    released = approved_periods(approvals, release_level=2)
    assert released and all(a.level >= 2 for a in released.values())
