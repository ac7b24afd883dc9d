"""The timesheet roll-up through real DAG runs against the GitLab, Salesforce, SMTP and S3 stand-ins."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests

from ps_integrations.domain.timesheets import parse_period_key
from ps_integrations.exports import ExportStore
from ps_integrations.hooks.gitlab import GitLabHook
from ps_integrations.state_store import StateStore

pytestmark = [pytest.mark.airflow, pytest.mark.calendar]

NO_SELECTION = {"period": None, "period_start": None, "period_end": None, "preview": False}
DATA_FILES = ("approved_hours.csv", "utilization.csv", "engagement_progress.csv", "findings.csv")


@pytest.fixture
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_timesheet_rollup")


def run(dag, **conf):
    from airflow.utils.state import DagRunState

    result = dag.test(run_conf={**NO_SELECTION, **conf})
    assert result.state == DagRunState.SUCCESS, last_summary()
    return result


def read(folder, name):
    return list(csv.DictReader(io.StringIO(ExportStore.from_variables().read_bytes(folder, name).decode("utf-8"))))


def folder_bytes(folder) -> dict[str, bytes]:
    exports = ExportStore.from_variables()
    return {name: exports.read_bytes(folder, name) for name in exports.list_folder(folder)}


def last_summary() -> str:
    return StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_timesheet_rollup"})[0]["summary"]


def approval_project():
    return GitLabHook().client.projects.get("professional-services/time-tracking")


def waiting_for_head_of_ps(period: str):
    issues = approval_project().issues.list(labels=f"timesheet::{period},ManagerCertifiedTimesheet", get_all=True)
    return [issue for issue in issues if "HeadOfPSApproved" not in issue.labels and len(issue.assignees) == 1]


def add_timelog(sandbox, engineer: str, seconds: int, spent_at: datetime, category: str = "PS Internal"):
    backend = sandbox.standin("gitlab").backend
    issue = approval_project().issues.list(search=f"{category} - time tracking", get_all=True)[0]
    return backend.add_timelog(backend.issues[issue.id], backend.user_by_username(engineer), seconds, spent_at, "late")


def test_approved_periods_are_exported_with_budgets_findings_and_one_finance_mail(dag, product_env):
    run(dag)

    exports = ExportStore.from_variables()
    periods = exports.list_folder("timesheets")
    assert {"2026-W40", "2026-W43"} <= set(periods) and len(periods) >= 5
    folder = "timesheets/2026-W40"
    assert exports.list_folder(folder) == ["README.md", *sorted([*DATA_FILES, "manifest.json"])]
    hours = read(folder, "approved_hours.csv")
    assert hours and all(float(row["hours"]) * 4 == int(float(row["hours"]) * 4) for row in hours)
    assert {row["category"] for row in hours} >= {"Project Work", "PS Internal"}
    assert all(row["billable"] == ("true" if row["category"] == "Project Work" else "false") for row in hours)
    linked = [row for row in hours if row["opportunity_id"]]
    assert linked and all(row["opportunity_id"].startswith("006") and row["sku"] for row in linked)

    # partly approved (manager only) and unapproved engineers are reported, never exported
    pending = {issue.assignees[0]["username"] for issue in waiting_for_head_of_ps("2026-W43")}
    exported_w43 = {row["engineer"] for row in read("timesheets/2026-W43", "approved_hours.csv")}
    assert pending and not pending & exported_w43
    assert "unapproved 2026-W43:" in last_summary()

    progress = [row for period in periods for row in read(f"timesheets/{period}", "engagement_progress.csv")]
    assert {row["budget_source"] for row in progress} >= {"opportunity", "sku_table"}
    embedded = [row for row in progress if row["billing"] == "time_and_materials" and row["period_hours"] != "0"]
    assert embedded and all(row["currency"] == "USD" and float(row["revenue_to_release"]) > 0 for row in embedded)
    for row in progress:
        if row["budgeted_hours"]:
            expected = min(100.0, float(row["approved_hours_to_date"]) / float(row["budgeted_hours"]) * 100)
            assert abs(float(row["percent_complete"]) - expected) <= 0.05
            assert (row["over_budget"] == "true") == (
                float(row["approved_hours_to_date"]) > float(row["budgeted_hours"])
            )

    findings = [row for period in periods for row in read(f"timesheets/{period}", "findings.csv")]
    assert {"untrusted_approval", "under_minimum"} <= {row["kind"] for row in findings}

    manifest = json.loads(exports.read_bytes(folder, "manifest.json"))
    for name in DATA_FILES:
        content = exports.read_bytes(folder, name)
        assert manifest["files"][name]["sha256"] == hashlib.sha256(content).hexdigest()
        assert manifest["files"][name]["rows"] == len(read(folder, name))
    assert manifest["release_label"] == "HeadOfPSApproved"
    assert {a["engineer"] for a in manifest["approvals"]} == {
        row["engineer"] for row in read(folder, "utilization.csv")
    }

    [mail] = product_env.smtp.store.all()
    assert mail["rcpt_tos"] == ["finance@example.com"]
    assert "2026-W40" in mail["subject"] and "timesheets/2026-W43" in mail["html"]


def test_reruns_and_backfills_write_identical_bytes_and_mail_once(dag, product_env, tmp_path):
    run(dag)
    first = {period: folder_bytes(f"timesheets/{period}") for period in ("2026-W40", "2026-W41")}

    run(dag)  # nothing new
    assert "periods exported 0," in last_summary()
    run(dag, period_start="2026-09-28", period_end="2026-10-11")  # W40 and W41, as a backfill would
    assert "periods unchanged 2," in last_summary()
    shutil.rmtree(tmp_path / "exports" / "timesheets" / "2026-W40")
    run(dag, period="2026-W40")  # a lost folder is re-created

    again = {period: folder_bytes(f"timesheets/{period}") for period in first}
    assert [(p, n) for p in first for n in first[p] if again[p].get(n) != first[p][n]] == []
    assert again == first
    assert len(product_env.smtp.store.all()) == 1


def test_a_late_approval_is_caught_up_without_touching_what_was_exported(dag, product_env):
    run(dag)
    late = waiting_for_head_of_ps("2026-W43")[0]
    engineer = late.assignees[0]["username"]
    before = read("timesheets/2026-W43", "approved_hours.csv")
    assert engineer not in {row["engineer"] for row in before}

    approval_project().issues.update(late.iid, {"add_labels": "HeadOfPSApproved"})
    run(dag)

    after = read("timesheets/2026-W43", "approved_hours.csv")
    assert engineer in {row["engineer"] for row in after}
    assert [row for row in after if row["engineer"] != engineer] == before
    assert "engineer-periods locked 1," in last_summary()
    assert len(product_env.smtp.store.all()) == 2  # the new version of W43 is mailed


def test_a_change_to_a_locked_period_is_an_adjustment_in_the_next_export(dag, product_env):
    run(dag)
    w40 = folder_bytes("timesheets/2026-W40")
    engineer = read("timesheets/2026-W40", "approved_hours.csv")[0]["engineer"]
    add_timelog(product_env, engineer, 3600, datetime(2026, 9, 30, 10, 0, tzinfo=UTC))

    run(dag)  # nothing to export yet: the change waits
    assert "1 adjustment(s) to locked periods wait for the next export" in last_summary()

    late = waiting_for_head_of_ps("2026-W43")[0]
    approval_project().issues.update(late.iid, {"add_labels": "HeadOfPSApproved"})
    run(dag)

    assert folder_bytes("timesheets/2026-W40") == w40
    [adjustment] = read("timesheets/2026-W43", "adjustments.csv")
    assert (adjustment["period"], adjustment["engineer"], adjustment["change"]) == ("2026-W40", engineer, "added")
    assert (adjustment["original_hours"], adjustment["new_hours"], adjustment["new_day"]) == ("", "1.00", "2026-09-30")
    assert "1 adjustment(s) to locked timelogs reported in timesheets/2026-W43/adjustments.csv" in last_summary()
    assert "1 adjustment(s)" in product_env.smtp.store.all()[-1]["html"]


def test_an_edit_to_a_locked_period_older_than_the_look_back_is_still_an_adjustment(dag, product_env):
    run(dag)
    first_pages = graphql_pages()
    # The run's interval ends Monday 2026-11-23 (pinned clock): the 8-week look-back starts 2026-09-28.
    look_back_start = date(2026, 11, 23) - timedelta(weeks=8)
    exported = ExportStore.from_variables().list_folder("timesheets")
    old = [key for key in exported if parse_period_key(key).end <= look_back_start]
    assert old, f"the seed should export periods before the look-back: {exported}"
    period = parse_period_key(old[0])
    engineer = read(f"timesheets/{period.key}", "approved_hours.csv")[0]["engineer"]

    run(dag)  # nothing changed: no old period is read again, a handful of count queries only
    assert "re-read" not in last_summary()
    assert graphql_pages() < first_pages

    add_timelog(product_env, engineer, 2 * 3600, datetime.combine(period.start, time(10), UTC))
    run(dag)
    assert "1 locked period(s) before the 8-week look-back re-read, their GitLab totals moved" in last_summary()
    assert period.key in last_summary()
    assert "1 adjustment(s) to locked periods wait for the next export" in last_summary()
    [pending] = StateStore().fetch_all("timesheets/pending_adjustments")
    assert (pending["period"], pending["engineer"], pending["change"]) == (period.key, engineer, "added")


def graphql_pages() -> int:
    return int(last_summary().split("GitLab GraphQL pages read: ")[1].split(";")[0])


def parse_dag():
    """The DAG parsed now: its schedule's time zone is PS_BUSINESS_TIMEZONE at parse time."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_timesheet_rollup")


def test_business_time_zone_dates_entries_near_midnight_across_dst(product_env, monkeypatch):
    # New Zealand daylight time began on 2026-09-27: Sunday 11:30 UTC is Monday 00:30 in Auckland.
    # One business time zone: the schedule's (PS_BUSINESS_TIMEZONE), which the variable follows.
    monkeypatch.setenv("PS_BUSINESS_TIMEZONE", "Pacific/Auckland")
    dag = parse_dag()
    released_w41 = {
        issue.assignees[0]["username"]
        for issue in approval_project().issues.list(labels="timesheet::2026-W41,HeadOfPSApproved", get_all=True)
        if len(issue.assignees) == 1 and "ManagerCertifiedTimesheet" in issue.labels
    }
    engineer = sorted(released_w41)[0]
    timelog = add_timelog(product_env, engineer, 5 * 3600, datetime(2026, 10, 4, 11, 30, tzinfo=UTC))

    run(dag, period="2026-W41")

    hours = read("timesheets/2026-W41", "approved_hours.csv")
    [row] = [
        r for r in hours if r["engineer"] == engineer and r["date"] == "2026-10-05" and r["category"] == "PS Internal"
    ]
    backend = product_env.standin("gitlab").backend
    auckland = ZoneInfo("Pacific/Auckland")
    same_line = [
        t.time_spent
        for t in backend.timelogs.values()
        if t.user_id == timelog.user_id
        and t.issue_id == timelog.issue_id
        and t.spent_at.astimezone(auckland).date() == date(2026, 10, 5)
    ]
    assert timelog.time_spent in same_line  # the Sunday-UTC timelog is on Monday in Auckland
    assert Decimal(row["logged_minutes"]) == Decimal(sum(same_line)) / 60
    manifest = json.loads(ExportStore.from_variables().read_bytes("timesheets/2026-W41", "manifest.json"))
    assert manifest["business_timezone"] == "Pacific/Auckland"
    assert timelog.id


def test_a_429_in_the_middle_of_graphql_paging_changes_nothing(dag, product_env, monkeypatch, tmp_path):
    run(dag, period="2026-W40")
    clean = folder_bytes("timesheets/2026-W40")

    monkeypatch.setenv("AIRFLOW_CONN_PS_STATE", f"sqlite:///{tmp_path / 'second-state.db'}")
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_BASE", (tmp_path / "second-exports").as_uri())
    admin = product_env.admin_url + "/gitlab/faults"
    requests.put(admin, json={"retry_after_scale": 0.02}, timeout=10).raise_for_status()
    requests.post(
        admin + "/script", json={"endpoint": "graphql", "kind": "rate_limited", "count": 1, "after": 3}, timeout=10
    ).raise_for_status()
    run(dag, period="2026-W40")

    assert requests.get(admin, timeout=10).json()["injected"] == {"rate_limited": 1}
    assert folder_bytes("timesheets/2026-W40") == clean
    pages = int(last_summary().split("GitLab GraphQL pages read: ")[1].split(";")[0])
    assert pages >= 4


def test_export_to_s3_through_moto_server(dag, product_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_BASE", "s3://ps-exports/finance")
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_CONN_ID", "aws_sandbox")
    run(dag, period="2026-W40")
    keys = {item["key"] for item in product_env.s3.state()["buckets"]["ps-exports"]}
    assert {f"finance/timesheets/2026-W40/{name}" for name in (*DATA_FILES, "manifest.json", "README.md")} <= keys


# --- issue #20 ---------------------------------------------------------------------------------------------
def run_refused(dag, **conf):
    from airflow.utils.state import DagRunState

    result = dag.test(run_conf={**NO_SELECTION, **conf})
    assert result.state == DagRunState.FAILED
    return result


def released_in(period: str) -> list[str]:
    return sorted(
        issue.assignees[0]["username"]
        for issue in approval_project().issues.list(labels=f"timesheet::{period},HeadOfPSApproved", get_all=True)
        if len(issue.assignees) == 1 and "ManagerCertifiedTimesheet" in issue.labels
    )


def approve(engineer: str, period: str, *levels: str) -> None:
    user = GitLabHook().client.users.list(username=engineer)[0]
    approval_project().issues.create(
        {
            "title": f"Timesheet {period} - {engineer}",
            "labels": ",".join([f"timesheet::{period}", *levels]),
            "assignee_ids": [user.id],
        }
    )


def logged(sandbox, engineer: str, category: str, moments: list[datetime], seconds: int) -> None:
    for moment in moments:
        add_timelog(sandbox, engineer, seconds, moment, category)


def test_hours_are_rounded_per_day_with_minutes_kept_and_checked_in_the_manifest(dag, product_env):
    engineer = released_in("2026-W41")[0]
    # a Saturday and a Sunday (the seed logs weekdays only): ten 6-minute and ten 8-minute entries
    saturday = [datetime(2026, 10, 10, 9, minute, tzinfo=UTC) for minute in range(10)]
    sunday = [datetime(2026, 10, 11, 9, minute, tzinfo=UTC) for minute in range(10)]
    logged(product_env, engineer, "Internal Assisted", saturday, 6 * 60)
    logged(product_env, engineer, "Global Company Meetings", sunday, 8 * 60)
    idle = next(name for name in all_engineers() if name not in released_in("2026-W41"))
    approve(idle, "2026-W47", "ManagerCertifiedTimesheet", "HeadOfPSApproved")  # a week with nothing logged

    run(dag)

    rows = read("timesheets/2026-W41", "approved_hours.csv")
    mine = {(r["date"], r["category"]): r for r in rows if r["engineer"] == engineer}
    six = mine[("2026-10-10", "Internal Assisted")]
    eight = mine[("2026-10-11", "Global Company Meetings")]
    assert (six["timelogs"], six["logged_minutes"], six["hours"]) == ("10", "60.00", "1.00")  # not ten 0.00
    assert (eight["timelogs"], eight["logged_minutes"], eight["hours"]) == ("10", "80.00", "1.25")  # not 2.50
    manifest = json.loads(ExportStore.from_variables().read_bytes("timesheets/2026-W41", "manifest.json"))
    rounding = manifest["rounding"]
    assert rounding["policy"] == "per_day" and rounding["within_bounds"] is True
    for check in rounding["engineers"]:
        theirs = [r for r in rows if r["engineer"] == check["engineer"]]
        assert Decimal(check["logged_minutes"]) == sum(Decimal(r["logged_minutes"]) for r in theirs)
        assert Decimal(check["rounded_hours"]) == sum(Decimal(r["hours"]) for r in theirs)
        assert (
            abs(Decimal(check["difference_hours"])) <= Decimal(check["bound_hours"]) == Decimal("0.125") * len(theirs)
        )
        assert check["timelogs"] == sum(int(r["timelogs"]) for r in theirs)

    # the zero-hour week: a utilization row and an under-minimum finding; one number format per column
    [nothing] = read("timesheets/2026-W47", "utilization.csv")
    assert (nothing["engineer"], nothing["billable_hours"], nothing["available_hours"]) == (idle, "0.00", "40.00")
    assert read("timesheets/2026-W47", "approved_hours.csv") == []
    [finding] = [f for f in read("timesheets/2026-W47", "findings.csv") if f["kind"] == "under_minimum"]
    assert (finding["engineer"], finding["detail"]) == (idle, "no time logged, minimum 40 h")
    periods = ExportStore.from_variables().list_folder("timesheets")
    for period in periods:
        for row in read(f"timesheets/{period}", "utilization.csv"):
            for column in ("billable_hours", "logged_hours", "available_hours"):
                assert len(row[column].rsplit(".", 1)[-1]) == 2, (period, column, row[column])


def finance_mails(sandbox) -> list[dict]:
    return [mail for mail in sandbox.smtp.store.all() if mail["rcpt_tos"] == ["finance@example.com"]]


def all_engineers() -> list[str]:
    return sorted(
        member.username
        for member in GitLabHook().client.groups.get("professional-services").members_all.list(get_all=True)
        if ".ps" in member.username
    )


def test_an_unfinished_period_is_refused_and_future_time_is_never_payable(dag, product_env):
    engineer = all_engineers()[0]
    add_timelog(product_env, engineer, 2 * 3600, datetime(2026, 11, 23, 8, 0, tzinfo=UTC))  # today, W48
    add_timelog(product_env, engineer, 3 * 3600, datetime(2026, 11, 26, 10, 0, tzinfo=UTC))  # Thursday: future
    approve(engineer, "2026-W48", "ManagerCertifiedTimesheet", "HeadOfPSApproved")
    exports = ExportStore.from_variables()

    run_refused(dag, period="2026-W48")
    run_refused(dag, period_start="2026-11-16", period_end="2026-11-23")  # the range reaches into W48
    assert not StateStore().fetch_all("timesheets/all_locks") and finance_mails(product_env) == []
    assert not exports.list_folder("timesheets")

    run(dag, period="2026-W48", preview=True)  # a dry look is fine
    summary = last_summary()
    assert f"preview 2026-W48, not ended (ends 2026-11-30), nothing written: {engineer} 2.00 h" in summary
    assert "preview 2026-W48: 1 timelog(s) not payable" in summary
    run(dag)  # the schedule's path: W48 is approved but not over
    assert "2026-W48" not in exports.list_folder("timesheets")
    assert finance_mails(product_env) and all("2026-W48" not in mail["subject"] for mail in finance_mails(product_env))


def test_the_schedule_and_the_dating_time_zone_must_agree(dag, product_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_PS_TIMESHEET_ROLLUP_CONFIG", json.dumps({"business_timezone": "Pacific/Auckland"}))
    run_refused(dag)  # schedule in UTC (PS_BUSINESS_TIMEZONE unset), dates in Auckland: refused, nothing written
    assert ExportStore.from_variables().list_folder("timesheets") == []
    assert finance_mails(product_env) == []  # (ps-ops gets the failure alert)


def test_a_free_gitlab_on_a_non_utc_server_with_duplicate_pages(dag, product_env, monkeypatch):
    from ps_integrations.exceptions import GitLabApiError
    from ps_integrations.hooks.gitlab import TIMELOGS_QUERY_TEMPLATE

    TIMELOGS_QUERY = TIMELOGS_QUERY_TEMPLATE % {"epic": "epic { title }"}
    from sandbox.seeds import load_seed_file

    seed = load_seed_file()
    seed["gitlab"].update(edition="free", server_timezone="Pacific/Auckland", timelog_page_overlap=3)
    product_env.load_seed(seed)
    monkeypatch.setenv(
        "AIRFLOW_VAR_PS_TIMESHEET_ROLLUP_CONFIG", json.dumps({"gitlab_server_timezone": "Pacific/Auckland"})
    )
    variables = {"group": "gid://gitlab/Group/1", "start": "2026-10-05", "end": "2026-10-11", "after": None}
    with pytest.raises(GitLabApiError, match="'epic' on type 'Issue'"):
        GitLabHook().graphql_query(TIMELOGS_QUERY, variables)  # the old query: the whole roll-up failed
    engineer = released_in("2026-W41")[0]
    backend = product_env.standin("gitlab").backend
    category = approval_project().issues.list(search="PS Internal - time tracking", get_all=True)[0]
    project = backend.project("professional-services/time-tracking")
    backend.add_note(project, category.iid, backend.user_by_username(engineer), "/spend 3h 2026-10-10")
    [spent] = [t for t in backend.timelogs.values() if t.spent_at == datetime(2026, 10, 9, 11, 0, tzinfo=UTC)]

    run(dag, period="2026-W41")

    summary = last_summary()
    assert "GitLab without epics (Free/CE)" in summary
    assert "timelog(s) GitLab returned on two pages counted once" in summary
    rows = read("timesheets/2026-W41", "approved_hours.csv")
    [saturday] = [r for r in rows if r["engineer"] == engineer and r["date"] == "2026-10-10"]
    assert (saturday["category"], saturday["logged_minutes"], saturday["hours"]) == ("PS Internal", "180.00", "3.00")
    assert "Uncategorised" not in {r["category"] for r in rows}
    assert {r["category"] for r in rows} >= {"Project Work", "PS Internal"}
    # every exported engineer's minutes are GitLab's, each timelog once (pages overlapped by three)
    week = parse_period_key("2026-W41")
    for name in {r["engineer"] for r in rows}:
        user = backend.user_by_username(name)
        expected = sum(
            t.time_spent
            for t in backend.timelogs.values()
            if t.user_id == user.id
            and week.start <= (t.spent_at.date() if t is not spent else date(2026, 10, 10)) < week.end
        )
        assert sum(Decimal(r["logged_minutes"]) for r in rows if r["engineer"] == name) * 60 == expected, name
    certification = [i for i in backend.issues.values() if "timesheet::2026-W47" in i.labels]
    assert len(certification) == len(all_engineers()) and all(i.epic_id is None for i in certification)


def certification_issues(period: str) -> dict[str, object]:
    issues = approval_project().issues.list(labels=f"timesheet::{period}", get_all=True)
    found = {}
    for issue in issues:
        marker = issue.description and "ps-integrations:timesheet-certification engineer=" in issue.description
        if marker:
            engineer = issue.description.split("timesheet-certification engineer=")[1].split(" ")[0]
            assert engineer not in found, f"a second certification issue for {engineer}"
            found[engineer] = issue
    return found


def test_certification_issues_are_opened_once_kept_current_and_left_to_people(dag, product_env, monkeypatch):
    from ps_integrations.exceptions import GitLabApiError

    GitLabHook().client.groups.get("professional-services").epics.create({"title": "Time Tracking"})  # the handbook's
    engineer = all_engineers()[0]
    tuesday = [datetime(2026, 11, 17, 9, minute, tzinfo=UTC) for minute in range(10)]
    logged(product_env, engineer, "PS Internal", tuesday, 6 * 60)
    logged(product_env, engineer, "Internal Assisted", [datetime(2026, 11, 18, 14, 0, tzinfo=UTC)], 2 * 3600)

    def killed(*_args, **_kwargs):  # the process dies after GitLab created the issue, before the epic link
        raise GitLabApiError(500, "POST /projects/:id/issues", "killed between the create and the link")

    with monkeypatch.context() as patch:
        patch.setattr(GitLabHook, "add_issue_to_epic", killed)
        run_refused(dag)
    run(dag)

    issues = certification_issues("2026-W47")
    assert set(issues) == set(all_engineers())  # one each, though the first run died after creating them
    backend = product_env.standin("gitlab").backend
    [epic] = [e for e in backend.epics.values() if e.title == "Time Tracking"]
    assert all(backend.issues[issue.id].epic_id == epic.id for issue in issues.values())
    mine = issues[engineer]
    assert [a["username"] for a in mine.assignees] == ["delivery-manager-1"]
    assert mine.labels == ["timesheet::2026-W47"]  # certifying stays a human act
    assert "| PS Internal | " in mine.description and "| 10 | 1:00 | 1.00 |" in mine.description
    assert "| Internal Assisted | " in mine.description and "| **Total** | | 11 | 3:00 | **3.00** |" in mine.description
    upload = mine.description.split("Spreadsheet: [")[1].split("]")[0]
    assert upload == f"timesheet-2026-W47-{engineer}.xlsx"
    assert any(name == upload and content[:2] == b"PK" for _p, name, content in backend.uploads.values())
    untrusted = [part for part in last_summary().split("; ") if part.startswith("untrusted approval issue")]
    assert untrusted and not [part for part in untrusted if any(f"#{i.iid}:" in part for i in issues.values())]

    add_timelog(product_env, engineer, 3600, datetime(2026, 11, 19, 10, 0, tzinfo=UTC))  # a late change
    run(dag)
    run(dag)  # and a re-run
    updated = approval_project().issues.get(mine.iid)
    assert "| **Total** | | 12 | 4:00 | **4.00** |" in updated.description
    notes = [n.body for n in updated.notes.list(get_all=True) if "changed after this issue was opened" in n.body]
    assert len(notes) == 1 and "4.00 h now" in notes[0]
    assert len(certification_issues("2026-W47")) == len(all_engineers())

    approval_project().issues.update(mine.iid, {"add_labels": "ManagerCertifiedTimesheet"})  # the manager certifies
    add_timelog(product_env, engineer, 3600, datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    run(dag)
    assert approval_project().issues.get(mine.iid).description == updated.description  # certified: left alone


def test_a_failed_budget_lookup_exports_locks_and_mails_nothing_and_the_next_run_recovers(dag, product_env):
    """#23: the roll-up used to export and lock periods without budgets when Salesforce failed."""
    admin = product_env.admin_url + "/salesforce/faults"
    script = {"endpoint": "query", "kind": "server_error", "count": 1}
    requests.post(admin + "/script", json=script, timeout=10).raise_for_status()

    run_refused(dag)  # fails at the end, naming what failed

    assert requests.get(admin, timeout=10).json()["injected"] == {"server_error": 1}
    [row] = StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_timesheet_rollup"})[:1]
    failures = json.loads(row["counts_json"])["failures"]
    assert failures and {(f["system"], f["field"]) for f in failures} == {("Salesforce", "Budgeted_Hours__c")}
    assert all(f["record"].startswith("opportunity 006") and "period 2026-W" in f["record"] for f in failures)
    assert ExportStore.from_variables().list_folder("timesheets") == []  # nothing without its budgets
    assert StateStore().fetch_all("timesheets/all_locks") == [] and finance_mails(product_env) == []

    run(dag)  # Salesforce answers again: everything goes out, once

    progress = read("timesheets/2026-W40", "engagement_progress.csv")
    assert {row["budget_source"] for row in progress} >= {"opportunity", "sku_table"}
    assert StateStore().fetch_all("timesheets/all_locks") and len(finance_mails(product_env)) == 1


def test_premium_categories_come_from_the_parent_work_item_not_from_issue_epic(dag, product_env):
    """#20: Issue.epic is retiring; on Premium the parent work item (the epic) names the category."""
    backend = product_env.standin("gitlab").backend
    category_issues = [i for i in backend.issues.values() if i.title.endswith(" - time tracking")]
    for issue in category_issues:  # only the parent work item can tell the category now
        issue.labels = [label for label in issue.labels if not label.startswith("timesheet-category::")]

    run(dag, period="2026-W41")

    assert "GitLab has epics: categories from the issue's parent work item (its epic)" in last_summary()
    rows = read("timesheets/2026-W41", "approved_hours.csv")
    by_issue = {row["engagement"]: row["category"] for row in rows if row["category"] != "Project Work"}
    titles = {backend.issue_url(issue): backend.epics[issue.epic_id].title for issue in category_issues}
    assert by_issue and all(titles[url] == category for url, category in by_issue.items())
    assert "Uncategorised" not in {row["category"] for row in rows}
