"""Deadline alerts on the finance exports: declared on the DAGs, and the callback mails on-call."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ps_integrations.alerts import CALLBACK_PATH, deadline_missed


@pytest.mark.parametrize(("dag_id", "minutes"), [("ps_sku_reconciliation", 60), ("ps_timesheet_rollup", 120)])
def test_finance_dags_declare_a_deadline(dag_id, minutes, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("PS_DEADLINE_ALERTS", "on")  # the deployment's default

    from tests.dags.test_integrity import DAGS_DIR

    dag = DagBag(dag_folder=str(DAGS_DIR)).get_dag(dag_id)
    [alert] = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.interval.total_seconds() == minutes * 60
    assert alert.callback.serialize()["path"] == CALLBACK_PATH
    assert type(alert.reference).__name__ == "DagRunQueuedAtDeadline"


def test_a_missed_deadline_mails_the_on_call_list(product_env):
    run = SimpleNamespace(dag_id="ps_timesheet_rollup", run_id="scheduled__2026-11-23T06:00:00+00:00")
    asyncio.run(deadline_missed({"dag_run": run}, what="The approved-hours export", within_minutes=120))
    [mail] = product_env.smtp.store.all()
    assert mail["rcpt_tos"] == ["ps-ops@example.com"]
    assert mail["subject"].startswith("[ps-integrations] LATE: The approved-hours export (ps_timesheet_rollup)")
    assert "scheduled__2026-11-23T06:00:00+00:00" in mail["html"]
