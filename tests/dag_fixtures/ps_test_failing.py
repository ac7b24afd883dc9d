"""A DAG built with the shared conventions whose only task fails (used by the notifier test)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from ps_integrations.conventions import dag_tags, default_args


@dag(
    dag_id="ps_test_failing",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=dag_tags("test"),
    default_args=default_args(retries=0),
)
def ps_test_failing():
    @task(task_display_name="Fetch opportunities")
    def fetch():
        raise RuntimeError("Salesforce said no")

    fetch()


ps_test_failing()
