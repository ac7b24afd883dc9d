"""The smoke DAG end to end: real Airflow run, mail in the sink, export in S3, run in the state DB."""

from __future__ import annotations

import pytest

from ps_integrations.state_store import StateStore

pytestmark = pytest.mark.airflow


def _dag(dag_id):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_integrity import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR))
    return bag.get_dag(dag_id)


def test_smoke_run_mails_exports_to_s3_and_records_the_run(airflow_db, product_env, monkeypatch):
    from airflow.utils.state import DagRunState

    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_BASE", "s3://ps-exports/demo")
    monkeypatch.setenv("AIRFLOW_VAR_PS_EXPORTS_CONN_ID", "aws_sandbox")

    run = _dag("ps_platform_smoke").test()

    assert run.state == DagRunState.SUCCESS
    mails = product_env.smtp.store.all()
    assert [(m["rcpt_tos"], m["subject"]) for m in mails] == [
        (["ps-ops@example.com"], f"[ps-integrations] platform smoke test {run.run_id}")
    ]
    keys = sorted(item["key"] for item in product_env.s3.state()["buckets"]["ps-exports"])
    assert len(keys) == 2
    assert keys[0].startswith("demo/smoke/") and keys[0].endswith("/README.md")
    assert keys[1].endswith("/smoke.csv")
    runs = StateStore().fetch_all("platform/runs_of_dag", {"dag_id": "ps_platform_smoke"})
    assert [r["run_id"] for r in runs] == [run.run_id]
    assert runs[0]["summary"].startswith("checks 3, mails sent 1, files written 2")


def test_smoke_mail_is_sent_once_per_run(product_env):
    from ps_integrations.platform_smoke import send_smoke_mail

    store = StateStore()
    store.apply_schema()
    sent = [send_smoke_mail(store, "ps_platform_smoke", "manual__x") for _ in range(2)]

    assert sent == [1, 0]
    assert len(product_env.smtp.store.all()) == 1
