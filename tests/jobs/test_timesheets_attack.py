"""The roll-up's orchestration attacked as a stranger would (issue #20), against the in-memory fakes of
tests/jobs/test_timesheets.py: corrections only, time on merge requests, a deleted user, managers
the configuration does not name, and certification issues killed half-way."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import pytest

from ps_integrations.hooks.gitlab import GitLabMember, GitLabTimelog, GitLabUser
from ps_integrations.jobs.timesheets import RollupConfig
from tests.jobs.test_timesheets import (
    ENGAGEMENTS,
    ENGINEER,
    GROUP,
    MANAGER,
    TIME_TRACKING,
    WEEK,
    FakeGitLab,
    timelog,
    world,  # noqa: F401 - the fixture
)

SECOND_MANAGER = GitLabUser(13, "delivery-manager-2")


def rows(world, name: str, period: str = WEEK) -> list[dict[str, str]]:  # noqa: F811
    return list(csv.DictReader(io.StringIO(world.exports.folders[f"timesheets/{period}"][name].decode())))


def certifying(**extra: object) -> RollupConfig:
    return RollupConfig(group=GROUP, engagements_project=ENGAGEMENTS, time_tracking_project=TIME_TRACKING, **extra)


def test_an_engineer_with_only_a_correction_gets_a_row_a_finding_and_no_negative_zero(world):  # noqa: F811
    world.gitlab.timelogs[:] = [timelog(1, "2026-11-10T09:00:00Z", -900)]

    summary = world.run()

    assert summary.counts["periods exported"] == 1
    [line] = rows(world, "approved_hours.csv")
    assert (line["logged_minutes"], line["hours"]) == ("-15.00", "-0.25")
    [util] = rows(world, "utilization.csv")
    assert (util["billable_hours"], util["logged_hours"], util["available_hours"]) == ("-0.25", "-0.25", "40.00")
    [low] = [f for f in rows(world, "findings.csv") if f["kind"] == "under_minimum"]
    assert low["detail"] == "-0.25 h logged, minimum 40 h"
    [progress] = rows(world, "engagement_progress.csv")
    assert progress["period_hours"] == "-0.25" and not progress["percent_complete"].startswith("-0.0")


def test_time_on_a_merge_request_or_by_a_deleted_user_is_named_never_paid(world):  # noqa: F811
    on_merge_request = GitLabTimelog(
        "7", "2026-11-12T09:00:00Z", 2 * 3600, ENGINEER.username, None, "", "", ENGAGEMENTS, (), None
    )
    ghost = timelog(8, "2026-11-12T10:00:00Z", 3600)._replace(username="ghost")
    world.gitlab.timelogs += [on_merge_request, ghost]

    summary = world.run()

    assert summary.counts["periods exported"] == 1
    assert sum(float(r["logged_minutes"]) for r in rows(world, "approved_hours.csv")) == 366  # neither paid
    assert {r["engineer"] for r in rows(world, "approved_hours.csv")} == {ENGINEER.username}
    [no_issue] = [f for f in rows(world, "findings.csv") if f["kind"] == "no_issue"]
    assert no_issue["engineer"] == ENGINEER.username


@dataclass
class TwoManagers(FakeGitLab):
    members: list[GitLabMember] = field(default_factory=list)

    def group_members_with_titles(self, group: str) -> list[GitLabMember]:
        return self.members


@pytest.fixture
def two_managers(world):  # noqa: F811
    gitlab = TwoManagers(world.gitlab.timelogs, world.gitlab.issues)
    gitlab.members = [
        GitLabMember(ENGINEER, "Professional Services Engineer"),
        GitLabMember(MANAGER, "Delivery Manager"),
        GitLabMember(SECOND_MANAGER, "Delivery Manager"),
    ]
    world.gitlab = gitlab
    world.gitlab.timelogs.append(timelog(4, "2026-11-17T09:00:00Z", 2 * 3600))  # W47: the week that ended
    return world


def certification_issues(world) -> list:  # noqa: F811
    return [i for i in world.gitlab.issues.values() if "timesheet::2026-W47" in i.labels]


def test_with_two_delivery_managers_the_one_who_wrote_the_engineers_approvals_is_assigned(two_managers):
    summary = two_managers.run(certifying())  # the seed approval issue #5 was written by MANAGER

    [opened] = certification_issues(two_managers)
    assert "prepared for certification by @delivery-manager-1" in opened.description
    assert summary.failures == []


def test_with_two_delivery_managers_and_no_history_the_run_names_the_setting(two_managers):
    for key, issue in list(two_managers.gitlab.issues.items()):
        if issue.project == TIME_TRACKING:
            del two_managers.gitlab.issues[key]

    summary = two_managers.run(certifying())

    assert certification_issues(two_managers) == []
    [failure] = summary.failures
    assert failure.field == "managers" and "2026-W47" in failure.record and ENGINEER.username in failure.record

    summary = two_managers.run(certifying(managers={ENGINEER.username: SECOND_MANAGER.username}))
    [opened] = certification_issues(two_managers)
    assert "prepared for certification by @delivery-manager-2" in opened.description and summary.failures == []


def test_a_manager_the_configuration_names_who_is_not_in_the_group_is_named(two_managers):
    summary = two_managers.run(certifying(managers={ENGINEER.username: "left.the.company"}))

    assert certification_issues(two_managers) == []
    [failure] = summary.failures
    assert failure.field == "managers" and "left.the.company" in failure.reason


@dataclass
class PremiumWithoutTheEpic(TwoManagers):
    """Premium (``Issue.epic`` exists) but nobody created the Time Tracking epic."""

    epic_lookups: int = 0

    def type_fields(self, type_name: str) -> frozenset[str]:
        return frozenset({"epic"}) if type_name == "Issue" else frozenset()

    def find_epic(self, group: str, title: str):
        self.epic_lookups += 1
        return None

    def list_timelogs(self, group_gid: str, start: str, end: str, *, with_epic: bool = False):
        return FakeGitLab.list_timelogs(self, group_gid, start, end)  # Premium answers Issue.epic


def test_a_missing_time_tracking_epic_is_looked_up_and_named_once_a_run(world):  # noqa: F811
    engineers = [GitLabUser(20 + n, f"engineer{n}.ps") for n in range(5)]
    gitlab = PremiumWithoutTheEpic(world.gitlab.timelogs, world.gitlab.issues)
    gitlab.members = [GitLabMember(MANAGER, "Delivery Manager")] + [
        GitLabMember(user, "Professional Services Engineer") for user in [ENGINEER, *engineers]
    ]
    world.gitlab = gitlab

    first = world.run(certifying())
    gitlab.epic_lookups = 0
    second = world.run(certifying())  # the issues are there now, none of them in an epic

    assert len(certification_issues(world)) == 6 and first.failures == second.failures == []
    for summary in (first, second):
        assert summary.line().count("no epic titled 'Time Tracking'") == 1
    assert gitlab.epic_lookups <= 2  # reading approvals and certifying: once each, not once an issue


def merge_request_timelog(number: int, spent_at: str, seconds: int) -> GitLabTimelog:
    """Time on a merge request: GitLab's ``Timelog.issue`` is null (no engagement issue to bill)."""
    return GitLabTimelog(str(number), spent_at, seconds, ENGINEER.username, None, "", "", ENGAGEMENTS, (), None)


def test_the_manager_sees_the_time_that_is_not_counted_and_a_late_one_updates_the_issue(world):  # noqa: F811
    world.gitlab.timelogs += [
        timelog(4, "2026-11-17T09:00:00Z", 2 * 3600),  # W47, the week that just ended
        merge_request_timelog(5, "2026-11-18T09:00:00Z", 90 * 60),
    ]
    world.run(certifying())
    [opened] = certification_issues(world)
    assert "| **Total** | | 1 | 2:00 | **2.00** |" in opened.description  # the MR time is not in the hours
    assert "Not counted" in opened.description and "1:30" in opened.description and "timelog 5" in opened.description

    world.gitlab.timelogs.append(merge_request_timelog(6, "2026-11-19T09:00:00Z", 45 * 60))  # a late one
    world.run(certifying())
    world.run(certifying())  # and a re-run

    [updated] = certification_issues(world)
    assert "timelog 6" in updated.description and "0:45" in updated.description
    [note] = world.gitlab.notes[(TIME_TRACKING, updated.iid)]
    assert "changed after this issue was opened" in note.body


def test_a_table_without_uncounted_time_keeps_its_digest(world):  # noqa: F811
    """Issues opened before the 'not counted' section must not all get a 'changed' note on upgrade."""
    from ps_integrations.domain.timesheet_certification import certification_digest, certification_rows
    from ps_integrations.domain.timesheets import Entry

    rows_ = certification_rows(
        [Entry("1", "a", __import__("datetime").date(2026, 11, 17), "u", "PS Internal", 3600)], "per_day"
    )
    assert certification_digest(rows_) == certification_digest(rows_, ())


def test_an_approval_labelled_with_a_month_in_a_weekly_roll_up_is_untrusted_not_a_zero_hour_export(world):  # noqa: F811
    """A ``timesheet::2026-11`` label on a weekly roll-up used to export and lock the engineer for
    "2026-11" with no hours (the timelogs are grouped by week), dropping the month's time for good."""
    from tests.jobs.test_timesheets import user_issue

    world.gitlab.issues[(TIME_TRACKING, 7)] = user_issue(
        7, ("timesheet::2026-10", "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ENGINEER
    )
    world.gitlab.timelogs.append(timelog(9, "2026-10-14T09:00:00Z", 3 * 3600))

    summary = world.run()

    assert "timesheets/2026-10" not in world.exports.folders
    assert "2026-10" not in world.ledger.locks()
    assert "untrusted approval issue #7" in summary.line() and "period_length" in summary.line()


def test_a_manual_period_of_the_other_length_is_refused(world):  # noqa: F811
    from ps_integrations.exceptions import ConfigurationError
    from ps_integrations.jobs.timesheets import selected_periods

    with pytest.raises(ConfigurationError, match="period_length"):
        selected_periods("2026-10", None, None, "week")
    with pytest.raises(ConfigurationError, match="period_length"):
        selected_periods("2026-W44", None, None, "month")
    assert [p.key for p in selected_periods("2026-W44", None, None, "week")] == ["2026-W44"]


@pytest.mark.parametrize("label", ["timesheet::next-week", "timesheet::2026-W99", "timesheet::2026-W1"])
def test_a_period_label_that_is_no_period_is_an_untrusted_approval_not_a_crash(world, label):  # noqa: F811
    from tests.jobs.test_timesheets import user_issue

    world.gitlab.issues[(TIME_TRACKING, 7)] = user_issue(
        7, (label, "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ENGINEER
    )

    summary = world.run()

    assert summary.counts["periods exported"] == 1  # the week with a good label still goes out
    assert "untrusted approval issue #7" in summary.line()
    assert set(world.ledger.locks()) == {WEEK}


def test_time_logged_after_the_manager_certified_is_a_finding_of_the_export(world):  # noqa: F811
    """The manager certifies the table the issue shows; time logged after that (before the Head of PS
    releases the week) is exported with the rest - finance must be told it was not certified."""
    from dataclasses import replace as replaced

    for key, issue in list(world.gitlab.issues.items()):
        if issue.project == TIME_TRACKING:
            del world.gitlab.issues[key]  # no by-hand approvals: the job's certification issue is the one
    world.gitlab.timelogs.append(timelog(4, "2026-11-17T09:00:00Z", 2 * 3600))  # W47
    world.run(certifying())
    [(key, opened)] = [(k, i) for k, i in world.gitlab.issues.items() if "timesheet::2026-W47" in i.labels]
    world.gitlab.timelogs.append(timelog(5, "2026-11-18T09:00:00Z", 3600))  # logged after the certification
    labels = (*opened.labels, "ManagerCertifiedTimesheet", "HeadOfPSApproved")
    world.gitlab.issues[key] = replaced(opened, labels=labels)

    world.run(certifying())

    hours = rows(world, "approved_hours.csv", "2026-W47")
    assert sum(float(r["hours"]) for r in hours) == 3.0  # exported as logged ...
    changed = [f for f in rows(world, "findings.csv", "2026-W47") if f["kind"] == "changed_after_certification"]
    assert [f["engineer"] for f in changed] == [ENGINEER.username]  # ... and named as not certified
    assert "3.00 h" in changed[0]["detail"] and f"#{opened.iid}" in changed[0]["detail"]


def test_an_export_matching_what_the_manager_certified_has_no_such_finding(world):  # noqa: F811
    from dataclasses import replace as replaced

    for key, issue in list(world.gitlab.issues.items()):
        if issue.project == TIME_TRACKING:
            del world.gitlab.issues[key]
    world.gitlab.timelogs.append(timelog(4, "2026-11-17T09:00:00Z", 2 * 3600))
    world.run(certifying())
    [(key, opened)] = [(k, i) for k, i in world.gitlab.issues.items() if "timesheet::2026-W47" in i.labels]
    world.gitlab.issues[key] = replaced(
        opened, labels=(*opened.labels, "ManagerCertifiedTimesheet", "HeadOfPSApproved")
    )

    world.run(certifying())

    assert "changed_after_certification" not in {f["kind"] for f in rows(world, "findings.csv", "2026-W47")}


def test_a_monthly_roll_up_exports_an_ended_month_refuses_the_running_one_and_certifies_the_last(world):  # noqa: F811
    from ps_integrations.exceptions import ConfigurationError
    from ps_integrations.jobs.timesheets import ExportLedger, TimesheetRollup, load_rules, selected_periods
    from ps_integrations.stores.sent_mail import SentMailLedger
    from tests.jobs.test_timesheets import NOW, TODAY, user_issue

    world.gitlab.issues[(TIME_TRACKING, 5)] = user_issue(
        5, ("timesheet::2026-10", "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ENGINEER
    )
    world.gitlab.timelogs[:] = [
        timelog(1, "2026-10-30T09:00:00Z", 3 * 3600),
        timelog(2, "2026-10-31T23:30:00Z", 3600),  # Saturday 31st, the month's last day in UTC
        timelog(3, "2026-11-01T00:30:00Z", 3600),  # November
    ]
    config = certifying(period_length="month")
    assert isinstance(world.ledger, ExportLedger)

    def run(selection=None):
        job = TimesheetRollup(
            world.gitlab,
            world.salesforce,
            world.ledger,
            SentMailLedger(world.values, "ps_timesheet_rollup"),
            world.smtp,
            world.exports,
            config,
            load_rules(),
            "run-m",
        )
        return job.run(TODAY, selection, TODAY, NOW)

    with pytest.raises(ConfigurationError, match="has not ended"):
        run(selected_periods("2026-11", None, None, "month"))
    summary = run()

    assert summary.counts["periods exported"] == 1
    october = rows(world, "approved_hours.csv", "2026-10")
    assert sum(float(r["logged_minutes"]) for r in october) == 240  # not the 1st of November
    [util] = rows(world, "utilization.csv", "2026-10")
    assert util["available_hours"] == "176.00"  # 22 working days in October 2026
    assert "timesheets/2026-11" not in world.exports.folders
    # the month that ended last (October) gets the certification issue, not the running November
    assert not [i for i in world.gitlab.issues.values() if "timesheet::2026-11" in i.labels]
