"""The smoke DAG's work: one mail and one export, each at most once per run."""

from __future__ import annotations

import logging
import re
from decimal import Decimal

from ps_integrations import clock
from ps_integrations.conventions import (
    ALERT_RECIPIENTS_VARIABLE,
    DEFAULT_ALERT_RECIPIENTS,
    SMTP_CONN_ID,
)
from ps_integrations.exports import Column, ExportStore, csv_file
from ps_integrations.state_store import StateStore

log = logging.getLogger(__name__)

SMOKE_COLUMNS = (
    Column("dag_id", "DAG that wrote the file"),
    Column("run_id", "Airflow run that wrote the file"),
    Column("check", "What was checked"),
    Column("amount", "A sample money amount, to show the number format"),
    Column("currency", "ISO 4217 currency of `amount`"),
)


def run_folder_name(run_id: str) -> str:
    """A path-safe folder name for a run id (``manual__2026-11-21T10:00:00+00:00``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")


def send_smoke_mail(store: StateStore, dag_id: str, run_id: str) -> int:
    """Send the test mail unless this run already did; return how many mails went out."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from airflow.sdk import Variable

    record = {"dag_id": dag_id, "run_id": run_id, "record_id": "smoke-mail", "action": "sent"}
    already = [row for row in store.fetch_all("platform/audit_of_run", record) if row["record_id"] == "smoke-mail"]
    if already:
        log.info("Test mail already sent by this run at %s; not sending again", already[0]["recorded_at"])
        return 0
    recipients = Variable.get(ALERT_RECIPIENTS_VARIABLE, default=DEFAULT_ALERT_RECIPIENTS)
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as smtp:
        smtp.send_email_smtp(
            to=recipients,
            subject=f"[ps-integrations] platform smoke test {run_id}",
            html_content=f"<p>The platform smoke test run <b>{run_id}</b> reached the mail server.</p>",
        )
    now = clock.now_iso()
    store.execute("platform/record_audit", {**record, "detail": f"to {recipients}", "recorded_at": now})
    log.info("Test mail sent to %d recipient(s)", len(recipients.split(",")))
    return 1


def write_smoke_export(exports: ExportStore, dag_id: str, run_id: str) -> list[str]:
    rows = [
        {
            "dag_id": dag_id,
            "run_id": run_id,
            "check": "exports store",
            "amount": Decimal("1234.50"),
            "currency": "USD",
        }
    ]
    smoke = csv_file("smoke.csv", "One row proving the exports store works.", SMOKE_COLUMNS, rows)
    return exports.write_folder(f"smoke/{run_folder_name(run_id)}", "Platform smoke test export", [smoke])
