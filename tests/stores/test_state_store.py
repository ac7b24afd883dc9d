"""The state store against both backends, through real Airflow connections."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from ps_integrations.state_store import StateStore, schema_files, split_statements


def test_schema_applies_once_and_creates_the_platform_tables(store):
    first = store.apply_schema()
    second = store.apply_schema()

    assert first == [path.stem for path in schema_files()]
    assert second == []
    assert {"schema_migrations", "job_runs", "audit_log"} <= set(store.table_names())


def test_schema_applied_by_concurrent_tasks_is_applied_once(store):
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            StateStore(store.conn_id).apply_schema()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with store.transaction() as connection:
        versions = connection.execute(text("SELECT version FROM schema_migrations")).scalars().all()
    assert sorted(versions) == [path.stem for path in schema_files()]


def test_run_record_is_an_upsert(store):
    store.apply_schema()
    row = {
        "dag_id": "ps_demo",
        "run_id": "manual__1",
        "interval_start": None,
        "interval_end": None,
        "summary": "read 1, created 1",
        "counts_json": "{}",
        "failed": 0,
        "finished_at": "2026-11-21T10:00:00+00:00",
    }
    store.execute("platform/record_run", row)
    store.execute(
        "platform/record_run",
        {**row, "summary": "read 1, created 0", "finished_at": "2026-11-21T10:05:00+00:00"},
    )

    runs = store.fetch_all("platform/runs_of_dag", {"dag_id": "ps_demo"})
    assert [(run["run_id"], run["summary"]) for run in runs] == [("manual__1", "read 1, created 0")]


def test_audit_rows_of_a_retried_task_are_rewritten_not_duplicated(store):
    store.apply_schema()
    row = {
        "dag_id": "d",
        "run_id": "r",
        "record_id": "006A",
        "action": "created",
        "detail": "#1",
        "recorded_at": "t1",
    }
    store.execute("platform/record_audit", row)
    store.execute("platform/record_audit", {**row, "detail": "#1 (retry)", "recorded_at": "t2"})

    rows = store.fetch_all("platform/audit_of_run", {"dag_id": "d", "run_id": "r"})
    assert [(r["record_id"], r["action"], r["detail"]) for r in rows] == [("006A", "created", "#1 (retry)")]


def test_unknown_connection_names_the_connection(monkeypatch):
    from ps_integrations.exceptions import StateStoreError

    monkeypatch.delenv("AIRFLOW_CONN_PS_STATE_MISSING", raising=False)
    with pytest.raises(StateStoreError, match="ps_state_missing"):
        StateStore("ps_state_missing").apply_schema()


def test_split_statements_keeps_semicolons_inside_strings():
    script = "-- comment; here\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nINSERT INTO a VALUES ('b;c');\n"
    assert split_statements(script) == ["CREATE TABLE a (x TEXT DEFAULT ';')", "INSERT INTO a VALUES ('b;c')"]
