"""A failing task of a DAG built with the shared conventions mails the alert recipients."""

from __future__ import annotations

import pytest

from tests.conftest import DAG_FIXTURES

pytestmark = pytest.mark.airflow


def test_failing_task_sends_a_failure_mail(airflow_db, product_env, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    monkeypatch.setenv("AIRFLOW_VAR_PS_ALERT_RECIPIENTS", "oncall@example.com,lead@example.com")
    dag = DagBag(dag_folder=str(DAG_FIXTURES)).get_dag("ps_test_failing")

    run = dag.test()

    assert run.state == DagRunState.FAILED
    mails = product_env.smtp.store.all()
    assert len(mails) == 1
    assert sorted(mails[0]["rcpt_tos"]) == ["lead@example.com", "oncall@example.com"]
    assert mails[0]["subject"] == f"[ps-integrations] ps_test_failing failed: Fetch opportunities ({run.run_id})"
    assert "Salesforce said no" in mails[0]["html"]
