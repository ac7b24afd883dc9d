"""Conventions every ps-integrations DAG follows, in one place.

- owner, tags, retries with exponential back-off (``default_args``),
- a failure mail through the SMTP provider's notifier, recipients from the ``ps_alert_recipients``
  variable (rendered when the failure happens, never at parse time),
- the run summary: the last task logs and returns one line of counts (``finish_run``) and the run
  is recorded in the state store.

The DAG-integrity test (tests/dags/test_integrity.py) enforces these for every DAG.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from ps_integrations import clock
from ps_integrations.exceptions import RecordsFailedError
from ps_integrations.run_summary import RunSummary

log = logging.getLogger(__name__)

OWNER = "ps-integrations"
PROJECT_TAG = "ps-integrations"
ALERT_RECIPIENTS_VARIABLE = "ps_alert_recipients"
MAIL_FROM_VARIABLE = "ps_mail_from"
DEFAULT_ALERT_RECIPIENTS = "ps-ops@example.com"
SMTP_CONN_ID = "smtp_default"

FAILURE_SUBJECT = "[ps-integrations] {{ ti.dag_id }} failed: {{ task.task_display_name }} ({{ ti.run_id }})"
FAILURE_BODY = """\
<p>The task <b>{{ task.task_display_name }}</b> of <b>{{ ti.dag_id }}</b> failed
after {{ ti.try_number }} {{ "try" if ti.try_number == 1 else "tries" }}.</p>
<ul>
<li>Run: {{ ti.run_id }}</li>
{% set run_conf = (dag_run.conf if dag_run and dag_run.conf else {}) -%}
{% set since = run_conf.get("since") or params.get("since") -%}
{% set until = run_conf.get("until") or params.get("until") -%}
{% if since or until -%}
<li>Window read: {{ since or "the beginning" }} to {{ until or "the time of the run" }}
(given in the trigger form; the data interval does not apply)</li>
{%- else -%}
<li>Data interval: {{ data_interval_start | default("-", true) }} to {{ data_interval_end | default("-", true) }}</li>
{%- endif %}
<li>Error: {{ exception | string | e }}</li>
<li>Log: <a href="{{ ti.log_url }}">{{ ti.log_url }}</a></li>
</ul>
<p>The DAG's documentation in the Airflow UI says how to re-run it safely.</p>
"""


def failure_notifier() -> Any:
    """SMTP notifier for task failures; recipients come from a variable at send time."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to="{{ var.value.get('" + ALERT_RECIPIENTS_VARIABLE + "', '" + DEFAULT_ALERT_RECIPIENTS + "') }}",
        from_email="{{ var.value.get('" + MAIL_FROM_VARIABLE + "', 'ps-integrations@example.com') }}",
        subject=FAILURE_SUBJECT,
        html_content=FAILURE_BODY,
        smtp_conn_id=SMTP_CONN_ID,
    )


def default_args(**overrides: Any) -> dict[str, Any]:
    """Task defaults shared by every DAG."""
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "on_failure_callback": [failure_notifier()],
    }
    args.update(overrides)
    return args


def dag_tags(*tags: str) -> list[str]:
    return [PROJECT_TAG, *tags]


def interval_bounds(context: Any) -> tuple[datetime | None, datetime | None]:
    """The run's data interval, or (None, None) for manual runs that have none."""
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    return start, end


def finish_run(summary: RunSummary, context: Any, state_store: Any | None = None) -> str:
    """Log the summary line, record the run, and fail visibly if any record was skipped.

    :return: the summary line (shown as the last task's return value in the UI).
    """
    line = summary.line()
    log.info("Run summary: %s", line)
    for failure in summary.failures:
        log.error("Failed record: %s", failure.describe())
    if state_store is not None:
        start, end = interval_bounds(context)
        state_store.execute(
            "platform/record_run",
            {
                "dag_id": context["dag"].dag_id,
                "run_id": context["run_id"],
                "interval_start": start.isoformat() if start else None,
                "interval_end": end.isoformat() if end else None,
                "summary": line,
                "counts_json": json.dumps(summary.to_dict(), sort_keys=True),
                "failed": len(summary.failures),
                "finished_at": clock.now_iso(),
            },
        )
    if summary.failures:
        from airflow.sdk.exceptions import AirflowFailException

        error = RecordsFailedError(line, [failure.describe() for failure in summary.failures])
        # Fail without retrying this task: the records are retried by the next run, not by a retry.
        raise AirflowFailException(str(error)) from error
    return line


def summarize_task() -> Any:
    """The last task of a DAG whose work task returns ``RunSummary.to_dict()``: logs and returns
    the summary line, records the run, and fails (without retry) naming every skipped record."""
    from airflow.sdk import task

    @task(task_display_name="Summarise the run")
    def summarize(result: dict, **context: Any) -> str:
        from ps_integrations.state_store import StateStore

        return finish_run(RunSummary.from_dict(result), context, StateStore())

    return summarize
