"""Deadline alerts (Airflow 3's replacement for SLAs) for the runs finance waits for.

A DAG declares ``deadline=finance_deadline(...)``; when a run has not finished that long after it
was queued, Airflow's triggerer awaits :func:`deadline_missed`, which mails the on-call list
(variable ``ps_alert_recipients``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)
CALLBACK_PATH = "ps_integrations.alerts.deadline_missed"


def deadline_alerts_enabled() -> bool:
    """``PS_DEADLINE_ALERTS=off`` leaves deadlines out of the parsed DAGs.

    Needed for ``airflow dags test`` / ``dag.test()``: in Airflow 3.3.2 a run finished there passes
    the DAG's serialized deadline dicts to ``DeadlineAlert.get_by_id`` (dagrun.update_state) and
    fails. Scheduler-run DAGs (the deployment) are not affected, so alerts are on by default.
    """
    return os.environ.get("PS_DEADLINE_ALERTS", "on").lower() not in ("off", "0", "false", "no")


def finance_deadline(within: timedelta, what: str) -> Any:
    """A deadline ``within`` after the run was queued, alerting that ``what`` is late (or None when off)."""
    if not deadline_alerts_enabled():
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=within,
        callback=AsyncCallback(
            CALLBACK_PATH, kwargs={"what": what, "within_minutes": int(within.total_seconds() // 60)}
        ),
        name=f"{what} late",
    )


def late_mail(what: str, within_minutes: int, context: dict[str, Any] | None) -> tuple[str, str]:
    run = (context or {}).get("dag_run") or {}
    dag_id = getattr(run, "dag_id", None) or (run.get("dag_id") if isinstance(run, dict) else None) or "a DAG"
    run_id = getattr(run, "run_id", None) or (run.get("run_id") if isinstance(run, dict) else None) or "-"
    subject = f"[ps-integrations] LATE: {what} ({dag_id}) not finished {within_minutes} min after it was queued"
    body = (
        f"<p>The run <b>{run_id}</b> of <b>{dag_id}</b> had not finished {within_minutes} minutes after it was "
        f"queued. {what} is late for finance.</p><p>Check the run in the Airflow UI (blocked task, a slow "
        "system, workers down); the DAG's documentation says how to re-run a period safely.</p>"
    )
    return subject, body


async def deadline_missed(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Awaited by the triggerer when a deadline passes: mail the on-call list."""
    from airflow.sdk import Variable

    from ps_integrations.mail import send_html_mail

    what = str(kwargs.get("what") or "a finance export")
    subject, body = late_mail(what, int(kwargs.get("within_minutes") or 0), context)
    recipients = await asyncio.to_thread(Variable.get, "ps_alert_recipients", "ps-ops@example.com")
    log.warning("%s", subject)
    await asyncio.to_thread(send_html_mail, recipients, subject, body)
