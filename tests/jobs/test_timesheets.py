"""The roll-up's orchestration against small in-memory fakes of its Protocols (issue #16): what it
exports, locks, mails and opens, and what it refuses to do when Salesforce fails (issue #23).
The ledger is the real repository over a throwaway SQLite file; the DAG tests cover the sandbox."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import create_engine

from ps_integrations.domain.opportunity_sync import marker
from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.exports import ExportFile
from ps_integrations.hooks.gitlab import (
    GitLabEpic,
    GitLabIssue,
    GitLabMember,
    GitLabNote,
    GitLabTimelog,
    GitLabUser,
    TimelogListing,
)
from ps_integrations.hooks.salesforce import OpportunityBudget, OpportunityLine
from ps_integrations.jobs.timesheets import ExportLedger, RollupConfig, TimesheetRollup, load_rules
from ps_integrations.jobs.timesheets.ports import TimesheetGitLab
from ps_integrations.state_store import StateStore
from ps_integrations.stores.sent_mail import SentMailLedger

GROUP = "ps"
ENGAGEMENTS = "ps/engagements"
TIME_TRACKING = "ps/time-tracking"
ENGAGEMENT_URL = "https://gitlab.example/ps/engagements/-/issues/1"
INTERNAL_URL = "https://gitlab.example/ps/time-tracking/-/issues/9"
OPPORTUNITY = "0065g00000AbCdEAAA"
WEEK = "2026-W46"  # Monday 2026-11-09 .. Sunday 2026-11-15
TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ENGINEER = GitLabUser(11, "amara.ps1")
MANAGER = GitLabUser(12, "delivery-manager-1")


def user_issue(
    iid: int, labels: tuple[str, ...], assignee: GitLabUser, project: str = TIME_TRACKING, **rest: object
) -> GitLabIssue:
    fields: dict[str, object] = {
        "project": project,
        "iid": iid,
        "id": 1000 + iid,
        "title": f"Issue {iid}",
        "description": "",
        "state": "opened",
        "labels": labels,
        "web_url": f"https://gitlab.example/{project}/-/issues/{iid}",
        "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-01T00:00:00Z",
        "closed_at": None,
        "due_date": None,
        "assignees": (assignee,),
        "author": MANAGER,
        "confidential": False,
        "time_estimate": 0,
        "total_time_spent": 0,
    }
    fields.update(rest)
    return GitLabIssue(**fields)  # type: ignore[arg-type]


def timelog(number: int, spent_at: str, seconds: int, on_engagement: bool = True) -> GitLabTimelog:
    return GitLabTimelog(
        str(number),
        spent_at,
        seconds,
        ENGINEER.username,
        1 if on_engagement else 9,
        ENGAGEMENT_URL if on_engagement else INTERNAL_URL,
        "opened",
        ENGAGEMENTS if on_engagement else TIME_TRACKING,
        () if on_engagement else ("some-label",),
        None,
    )


@dataclass
class FakeGitLab:
    """GitLab as the roll-up sees it: timelogs, people, issues, notes, uploads, epics."""

    timelogs: list[GitLabTimelog]
    issues: dict[tuple[str, int], GitLabIssue]
    parents: dict[int, str] = field(default_factory=dict)  # issue id -> parent work item title
    has_hierarchy: bool = False
    notes: dict[tuple[str, int], list[GitLabNote]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)
    epic_links: list[tuple[int, int]] = field(default_factory=list)

    def group_gid(self, group: str) -> str:
        return "gid://gitlab/Group/1"

    def type_fields(self, type_name: str) -> frozenset[str]:
        if type_name == "WorkItemWidgetHierarchy" and self.has_hierarchy:
            return frozenset({"parent", "children", "hasParent"})
        return frozenset()  # no Issue.epic: a Free instance unless it has the hierarchy

    def list_timelogs(self, group_gid: str, start: str, end: str, *, with_epic: bool = False) -> TimelogListing:
        assert not with_epic, "Issue.epic asked of an instance that does not have it"
        # a timelog without spentAt is in every answer here: the schema allows one in any
        chosen = [t for t in self.timelogs if not t.spent_at or start <= t.spent_at[:10] <= end]
        return TimelogListing(chosen, 1, 0)

    def timelog_figures(self, group_gid: str, ranges: list[tuple[str, str]]) -> list[tuple[int, int]]:
        return [
            (len(chosen), sum(t.seconds for t in chosen))
            for start, end in ranges
            for chosen in [[t for t in self.timelogs if start <= t.spent_at[:10] <= end]]
        ]

    def work_item_parents(self, issue_ids: Sequence[int]) -> dict[int, str]:
        assert self.has_hierarchy
        return {issue_id: self.parents[issue_id] for issue_id in issue_ids if issue_id in self.parents}

    def group_members_with_titles(self, group: str) -> list[GitLabMember]:
        return [GitLabMember(ENGINEER, "Professional Services Engineer"), GitLabMember(MANAGER, "Delivery Manager")]

    def list_issues(self, project: str, **_filters: object) -> Iterator[GitLabIssue]:
        yield from (issue for (where, _iid), issue in sorted(self.issues.items()) if where == project)

    def create_issue(self, project: str, title: str, description: str, **fields: object) -> GitLabIssue:
        iid = 1 + max((iid for where, iid in self.issues if where == project), default=0)
        labels = tuple(str(label) for label in fields.get("labels") or ())  # type: ignore[attr-defined]
        created = user_issue(iid, labels, MANAGER, project, title=title, description=description)
        self.issues[(project, iid)] = created
        return created

    def update_issue(self, project: str, iid: int, **fields: object) -> GitLabIssue:
        changed = replace(self.issues[(project, iid)], description=str(fields["description"]))
        self.issues[(project, iid)] = changed
        return changed

    def list_notes(self, project: str, iid: int, *, newest_first: bool = True) -> Iterator[GitLabNote]:
        yield from self.notes.get((project, iid), [])

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote:
        note = GitLabNote(len(self.notes) + 1, body, "bot", "2026-11-23T10:00:00Z", False)
        self.notes.setdefault((project, iid), []).append(note)
        return note

    def upload_file(self, project: str, filename: str, content: bytes) -> str:
        self.uploads.append(filename)
        return f"[{filename}](/uploads/x/{filename})"

    def find_epic(self, group: str, title: str) -> GitLabEpic | None:
        return None

    def epic_issue_ids(self, group: str, epic_iid: int) -> set[int]:
        return set()

    def add_issue_to_epic(self, group: str, epic_iid: int, issue_id: int) -> None:
        self.epic_links.append((epic_iid, issue_id))


@dataclass
class FakeSalesforce:
    failing: bool = False
    asked: int = 0

    def opportunity_budgets(self, opportunity_ids: list[str], budget_field: str) -> list[OpportunityBudget]:
        self.asked += 1
        if self.failing:
            raise SalesforceApiError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        lines = (OpportunityLine("GL-IMPL-QS", "1", "12000"),)
        return [OpportunityBudget(oid, "40", lines) for oid in opportunity_ids if oid == OPPORTUNITY]


@dataclass
class FakeExports:
    folders: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def write_folder(self, folder: str, title: str, files: Sequence[ExportFile]) -> list[str]:
        self.folders[folder] = {f.name: f.content for f in files}
        return [f"mem://{folder}/{f.name}" for f in files]


@dataclass
class FakeValues:
    """The state store's key/value table; ``dead``: the process was killed, nothing more is written."""

    values: dict[tuple[str, str], str] = field(default_factory=dict)
    dead: bool = False

    def get_value(self, job: str, name: str) -> str | None:
        return self.values.get((job, name))

    def set_value(self, job: str, name: str, value: str) -> None:
        if not self.dead:
            self.values[(job, name)] = value

    def fetch_all(self, name: str, params: dict) -> list[dict]:
        assert name == "platform/values_like"
        prefix = params["pattern"].rstrip("%")
        return [
            {"name": key, "value": value}
            for (job, key), value in sorted(self.values.items())
            if job == params["job"] and key.startswith(prefix)
        ]


@dataclass
class FakeSmtp:
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    after_250: Callable[[], None] | None = None

    def __call__(self, to: str, subject: str, html: str) -> None:
        self.sent.append((to, subject, html))
        if self.after_250 is not None:
            self.after_250()


class Killed(BaseException):
    """SIGKILL: no handler of the job runs after it (the fake store ignores writes)."""


@dataclass
class World:
    gitlab: FakeGitLab
    salesforce: FakeSalesforce
    exports: FakeExports
    ledger: ExportLedger
    values: FakeValues
    smtp: FakeSmtp

    def run(self, config: RollupConfig | None = None, until: date = TODAY):
        settings = config or RollupConfig(
            group=GROUP,
            engagements_project=ENGAGEMENTS,
            time_tracking_project=TIME_TRACKING,
            certification_issues=False,
        )
        gitlab: TimesheetGitLab = self.gitlab
        job = TimesheetRollup(
            gitlab,
            self.salesforce,
            self.ledger,
            SentMailLedger(self.values, "ps_timesheet_rollup"),
            self.smtp,
            self.exports,
            settings,
            load_rules(),
            "run-1",
        )
        return job.run(until, None, TODAY, NOW)

    def rows(self, name: str = "approved_hours.csv") -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.exports.folders[f"timesheets/{WEEK}"][name].decode())))


@pytest.fixture
def world(tmp_path) -> World:
    store = StateStore(engine=create_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    store.apply_schema()
    engagement = user_issue(
        1,
        ("ps::engagement",),
        ENGINEER,
        ENGAGEMENTS,
        title="Acme: Rollout",
        description=f"Scope\n\n{marker(OPPORTUNITY)}",
        web_url=ENGAGEMENT_URL,
    )
    approval = user_issue(5, (f"timesheet::{WEEK}", "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ENGINEER)
    gitlab = FakeGitLab(
        [
            timelog(1, "2026-11-10T09:00:00Z", 3 * 3600),
            timelog(2, "2026-11-10T13:00:00Z", 2 * 3600 + 6 * 60),
            timelog(3, "2026-11-11T09:00:00Z", 3600, on_engagement=False),
        ],
        {(ENGAGEMENTS, 1): engagement, (TIME_TRACKING, 5): approval},
    )
    return World(gitlab, FakeSalesforce(), FakeExports(), ExportLedger(store), FakeValues(), FakeSmtp())


def test_a_released_week_is_exported_locked_and_mailed_once(world):
    summary = world.run()

    assert summary.counts["periods exported"] == 1 and summary.counts["engineer-periods locked"] == 1
    rows = world.rows()
    assert [(r["date"], r["engagement"], r["logged_minutes"], r["hours"]) for r in rows] == [
        ("2026-11-10", ENGAGEMENT_URL, "306.00", "5.00"),  # 3 h + 2 h 6 min, rounded per day
        ("2026-11-11", INTERNAL_URL, "60.00", "1.00"),
    ]
    [progress] = world.rows("engagement_progress.csv")
    assert (progress["budgeted_hours"], progress["budget_source"], progress["period_hours"]) == (
        "40.00",
        "opportunity",
        "5.00",
    )
    assert world.ledger.locks() == {WEEK: {ENGINEER.username: 2}}
    assert len(world.smtp.sent) == 1 and WEEK in world.smtp.sent[0][1]
    before = dict(world.exports.folders)

    again = world.run()  # a re-run: the same bytes, no second mail
    assert again.counts["periods exported"] == 0 and world.exports.folders == before
    assert len(world.smtp.sent) == 1


def test_the_parent_work_item_names_the_category_where_the_instance_has_one(world):
    world.gitlab.has_hierarchy = True
    world.gitlab.parents = {9: "Internal Assisted"}  # the label says nothing; the parent does

    summary = world.run()

    assert "categories from the issue's parent work item, labels" in summary.line()
    internal = [r for r in world.rows() if r["engagement"] == INTERNAL_URL]
    assert [r["category"] for r in internal] == ["Internal Assisted"]


def test_labels_and_the_mapping_name_it_on_a_free_instance(world):
    config = RollupConfig(
        group=GROUP,
        engagements_project=ENGAGEMENTS,
        time_tracking_project=TIME_TRACKING,
        certification_issues=False,
        category_issues={INTERNAL_URL: "Global Company Meetings"},
    )
    summary = world.run(config)

    assert "GitLab without epics (Free/CE)" in summary.line()
    assert {r["category"] for r in world.rows() if r["engagement"] == INTERNAL_URL} == {"Global Company Meetings"}


def test_a_failed_budget_lookup_exports_and_locks_nothing_and_the_next_run_recovers(world):
    world.salesforce.failing = True

    summary = world.run()

    [failure] = summary.failures
    assert (failure.system, failure.field) == ("Salesforce", "Budgeted_Hours__c")
    assert OPPORTUNITY in failure.record and ENGAGEMENT_URL in failure.record and WEEK in failure.record
    assert "REQUEST_LIMIT_EXCEEDED" in failure.reason
    assert world.exports.folders == {} and world.ledger.locks() == {} and world.smtp.sent == []

    world.salesforce.failing = False
    recovered = world.run()
    assert recovered.failures == [] and recovered.counts["periods exported"] == 1
    [progress] = world.rows("engagement_progress.csv")
    assert progress["budgeted_hours"] == "40.00"


def test_a_kill_between_the_smtp_250_and_the_record_never_mails_twice_and_is_named(world):
    def killed() -> None:
        world.values.dead = True  # nothing this process writes after the 250 reaches the store
        raise Killed

    world.smtp.after_250 = killed
    with pytest.raises(Killed):
        world.run()
    world.values.dead = False
    world.smtp.after_250 = None
    assert len(world.smtp.sent) == 1  # the server accepted it

    summary = world.run()  # the retry: the export is rewritten, the mail is not sent again

    assert len(world.smtp.sent) == 1
    assert f"finance mail about timesheets/{WEEK} interrupted" in summary.line()
    assert summary.failures == []
    # A later run with nothing to export (the chaos harness's clean run) still names it, once.
    later = world.run()
    assert later.line().count(f"finance mail about timesheets/{WEEK} interrupted") == 1
    assert len(world.smtp.sent) == 1


def test_a_failed_smtp_send_is_retried_by_the_next_run(world):
    def refused() -> None:
        raise OSError("421 try again later")

    world.smtp.after_250 = refused
    with pytest.raises(OSError, match="421"):
        world.run()
    world.smtp.after_250 = None

    world.run()

    assert len(world.smtp.sent) == 2  # the refused one and the retry; the claim was released


def test_certification_issue_opened_once_for_the_manager(world):
    world.gitlab.timelogs.append(timelog(4, "2026-11-17T09:00:00Z", 2 * 3600))  # W47, the week that just ended
    config = RollupConfig(group=GROUP, engagements_project=ENGAGEMENTS, time_tracking_project=TIME_TRACKING)

    world.run(config)
    world.run(config)

    opened = [i for i in world.gitlab.issues.values() if "timesheet::2026-W47" in i.labels]
    assert len(opened) == 1
    assert "engineer=amara.ps1 period=2026-W47" in opened[0].description
    assert "| **Total** | | 1 | 2:00 | **2.00** |" in opened[0].description
    assert world.gitlab.uploads == ["timesheet-2026-W47-amara.ps1.xlsx"]
    assert json.loads(json.dumps(opened[0].labels)) == ["timesheet::2026-W47"]  # certifying stays human


def test_progress_to_date_counts_earlier_periods_exported_by_the_same_run(world):
    """The pairs are locked after the finance mail; a later period of the run still counts the earlier."""
    world.gitlab.timelogs.append(timelog(5, "2026-11-03T09:00:00Z", 4 * 3600))  # W45
    world.gitlab.issues[(TIME_TRACKING, 6)] = user_issue(
        6, ("timesheet::2026-W45", "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ENGINEER
    )

    summary = world.run()

    assert summary.counts["periods exported"] == 2 and summary.counts["engineer-periods locked"] == 2
    [progress] = world.rows("engagement_progress.csv")  # W46
    assert (progress["period_hours"], progress["approved_hours_to_date"]) == ("5.00", "9.00")


def test_a_timelog_without_a_date_is_named_and_the_dated_ones_still_export(world):
    """GitLab's ``Timelog.spentAt`` is nullable: such a timelog belongs to no period. It is named (id,
    engineer, issue, field) as a failure of the run, and the week's dated time still exports."""
    world.gitlab.timelogs.append(timelog(4, "", 2 * 3600))

    summary = world.run()

    assert summary.counts["periods exported"] == 1
    assert sum(float(row["logged_minutes"]) for row in world.rows()) == 366  # timelogs 1-3, not 4
    [failure] = summary.failures
    assert (failure.system, failure.field) == ("GitLab", "spentAt")
    assert failure.record == f"timelog 4 by {ENGINEER.username} on {ENGAGEMENT_URL}"
    assert "2 h" in failure.reason and "no period" in failure.reason
