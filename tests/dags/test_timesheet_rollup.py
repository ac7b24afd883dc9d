"""The timesheet roll-up (work in progress) through real DAG runs against the GitLab stand-in."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from ps_integrations.exports import ExportStore
from ps_integrations.hooks.gitlab import GitLabHook
from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow


@pytest.fixture
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    return DagBag(dag_folder=str(DAGS_DIR)).get_dag("ps_timesheet_rollup")


def read(folder, name):
    return list(csv.DictReader(io.StringIO(ExportStore.from_variables().read_bytes(folder, name).decode("utf-8"))))


def last_summary() -> str:
    return StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_timesheet_rollup"})[0]["summary"]


def test_approved_periods_are_exported_locked_and_adjusted(dag, product_env):
    from airflow.utils.state import DagRunState

    assert dag.test(run_conf={"period": None}).state == DagRunState.SUCCESS
    exports = ExportStore.from_variables()
    periods = exports.list_folder("timesheets")
    assert "2026-W40" in periods and len(periods) >= 5
    folder = "timesheets/2026-W40"
    assert exports.list_folder(folder) == [
        "README.md",
        "approved_hours.csv",
        "engagement_progress.csv",
        "findings.csv",
        "manifest.json",
        "utilization.csv",
    ]
    hours = read(folder, "approved_hours.csv")
    assert hours and all(float(row["hours"]) * 4 == int(float(row["hours"]) * 4) for row in hours)
    utilization = read(folder, "utilization.csv")
    assert utilization and all(row["available_hours"] for row in utilization)
    first = {name: exports.read_bytes(folder, name) for name in exports.list_folder(folder)}

    # a locked period's timelog changes: reported as an adjustment, never re-exported
    project = GitLabHook().client.projects.get("professional-services/time-tracking")
    issue = project.issues.list(search="PS Internal - time tracking", get_all=True)[0]
    engineer = hours[0]["engineer"]
    product_env.standin("gitlab").backend.add_timelog(
        product_env.standin("gitlab").backend.issues[issue.id],
        product_env.standin("gitlab").backend.user_by_username(engineer),
        3600,
        datetime(2026, 9, 30, 10, 0, tzinfo=UTC),
        "late entry",
    )
    assert dag.test(run_conf={"period": "2026-W40"}).state == DagRunState.SUCCESS
    again = {name: exports.read_bytes(folder, name) for name in exports.list_folder(folder)}
    assert again["approved_hours.csv"] == first["approved_hours.csv"]
    [adjustment] = read(folder, "adjustments.csv")
    assert (adjustment["engineer"], adjustment["change"], adjustment["new_hours"]) == (engineer, "added", "1.00")
    assert "adjustment(s) to locked timelogs of 2026-W40" in last_summary()


def test_a_late_approval_is_caught_up_without_touching_what_was_exported(dag, product_env):
    dag.test(run_conf={"period": None})
    exports = ExportStore.from_variables()
    project = GitLabHook().client.projects.get("professional-services/time-tracking")
    pending = [
        issue
        for issue in project.issues.list(labels="timesheet::2026-W43,ManagerCertifiedTimesheet", get_all=True)
        if "HeadOfPSApproved" not in issue.labels and issue.assignees
    ]
    assert pending, "the seed has W43 timesheets waiting for the Head of PS"
    late = pending[0]
    engineer = late.assignees[0]["username"]
    before = read("timesheets/2026-W43", "approved_hours.csv")
    assert engineer not in {row["engineer"] for row in before}

    project.issues.update(late.iid, {"add_labels": "HeadOfPSApproved"})
    dag.test(run_conf={"period": None})

    after = read("timesheets/2026-W43", "approved_hours.csv")
    assert engineer in {row["engineer"] for row in after}
    assert [row for row in after if row["engineer"] != engineer] == before
    assert "exported engineer-periods 1," in last_summary()
    assert exports.list_folder("timesheets/2026-W43")
