"""
### Platform smoke test

Proves the platform end to end: the state store's schema is applied, a mail goes out through the
SMTP connection, and an export folder (CSV + `README.md` data dictionary) is written through the
exports store - to `s3://` when `ps_exports_base` says so.

**Connections:** `ps_state` (state database: sqlite or postgres), `smtp_default` (mail),
and the connection named by `ps_exports_conn_id` when exports go to S3.

**Variables:** `ps_exports_base` (default `file://<project>/exports`), `ps_exports_conn_id`,
`ps_alert_recipients` (failure mails and this test mail), `ps_mail_from`.

**Re-running and backfilling:** manual only (no schedule). Re-running a run rewrites the same
export folder (`smoke/<run>/`) and does not send its mail twice: the mail is recorded in the
state store's audit log.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from ps_integrations.conventions import dag_tags, default_args


@dag(
    dag_id="ps_platform_smoke",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=dag_tags("platform"),
    default_args=default_args(),
    dag_display_name="Platform smoke test",
)
def ps_platform_smoke():
    @task(task_display_name="Prepare the state database")
    def prepare_state_store() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Send a test mail")
    def send_test_mail(**context) -> int:
        from ps_integrations.platform_smoke import send_smoke_mail
        from ps_integrations.state_store import StateStore

        return send_smoke_mail(StateStore(), context["dag"].dag_id, context["run_id"])

    @task(task_display_name="Write a test export")
    def write_test_export(**context) -> list[str]:
        from ps_integrations.exports import ExportStore
        from ps_integrations.platform_smoke import write_smoke_export

        return write_smoke_export(ExportStore.from_variables(), context["dag"].dag_id, context["run_id"])

    @task(task_display_name="Summarise the run")
    def summarize(applied: list[str], mails_sent: int, files: list[str], **context) -> str:
        from ps_integrations.conventions import finish_run
        from ps_integrations.run_summary import RunSummary
        from ps_integrations.state_store import StateStore

        summary = RunSummary(counts={"checks": 3, "mails sent": mails_sent, "files written": len(files)})
        summary.note(f"schema applied now: {', '.join(applied) or 'none (up to date)'}")
        summary.note(f"export: {files[0].rsplit('/', 1)[0] if files else '-'}")
        return finish_run(summary, context, StateStore())

    applied = prepare_state_store()
    mails = send_test_mail()
    files = write_test_export()
    applied >> [mails, files]
    summarize(applied, mails, files)


ps_platform_smoke()
