"""The timesheet roll-up through real DAG runs against the GitLab, Salesforce, SMTP and S3 stand-ins."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from datetime import UTC, date, datetime, time, timedelta

import pytest
import requests

from ps_integrations.domain.timesheets import parse_period_key
from ps_integrations.exports import ExportStore
from ps_integrations.hooks.gitlab import GitLabHook
from ps_integrations.state_store import StateStore

pytestmark = [pytest.mark.airflow, pytest.mark.calendar]

NO_SELECTION = {"period": None, "period_start": None, "period_end": None}
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


def test_business_time_zone_dates_entries_near_midnight_across_dst(dag, product_env, monkeypatch):
    # New Zealand daylight time began on 2026-09-27: Sunday 11:30 UTC is Monday 00:30 in Auckland
    monkeypatch.setenv("AIRFLOW_VAR_PS_TIMESHEET_ROLLUP_CONFIG", json.dumps({"business_timezone": "Pacific/Auckland"}))
    released_w41 = {
        issue.assignees[0]["username"]
        for issue in approval_project().issues.list(labels="timesheet::2026-W41,HeadOfPSApproved", get_all=True)
        if len(issue.assignees) == 1 and "ManagerCertifiedTimesheet" in issue.labels
    }
    engineer = sorted(released_w41)[0]
    timelog = add_timelog(product_env, engineer, 5 * 3600, datetime(2026, 10, 4, 11, 30, tzinfo=UTC))

    run(dag, period="2026-W41")

    hours = read("timesheets/2026-W41", "approved_hours.csv")
    [row] = [r for r in hours if r["hours"] == "5.00" and r["engineer"] == engineer and r["category"] == "PS Internal"]
    assert row["date"] == "2026-10-05" and row["category"] == "PS Internal"
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
