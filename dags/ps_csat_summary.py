"""
### CSAT summary for PS leadership

Weekly (Mondays 07:00 UTC) over real data intervals, and on demand with `period`. Summarises the
fiscal quarter of the interval's last day (fiscal year from `fiscal_year_start_month`, as the
opportunity sync): CSAT % (answers of 4 or 5 / all answers), response rate, counts of each score,
by engagement type, SKU category, project manager and account, and the trend over the last 8
quarters. Every percentage shows its n; quarters with fewer than 5 answers are marked, never hidden.
Verbatims newest first. Writes `csat/<period>/`: `summary.html` (self-contained), `trend.png`,
`csat_by_dimension.csv`, `responses.csv` (no e-mail addresses), `manifest.json`, and mails the
report (chart inline, CSV attached) to `leadership_recipients` once per version. A run killed
between the server's 250 and the record never mails that version again: later runs name it
("leadership mail <period> interrupted") for a person to check the mailbox.

**Connections:** `ps_state`, `smtp_default`, the exports connection.

**Variables:** `ps_csat_summary_config` (JSON, all optional): `fiscal_year_start_month` (2),
`leadership_recipients`. Also `ps_exports_base`, `ps_exports_conn_id`.

**Re-running and backfilling:** safe: a run rewrites its quarter's folder from the state database
and mails only when the content changed. Trigger with `period` (e.g. `FY2027-Q3`) for any quarter.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations.conventions import dag_tags, default_args, summarize_task


@dag(
    dag_id="ps_csat_summary",
    schedule=CronDataIntervalTimetable("0 7 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("csat", "leadership"),
    default_args=default_args(),
    dag_display_name="CSAT summary for PS leadership",
    params={
        "period": Param(None, type=["null", "string"], description="Fiscal quarter to summarise, e.g. FY2027-Q3"),
    },
)
def ps_csat_summary():
    @task(task_display_name="Prepare the state database")
    def prepare() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Build, export and mail the CSAT summary")
    def summarise(_schema: list[str], **context) -> dict:
        from airflow.sdk import Variable

        from ps_integrations import clock
        from ps_integrations.exports import ExportStore
        from ps_integrations.jobs.csat_summary import CONFIG_VARIABLE, CsatSummary, SummaryConfig, period_of_run
        from ps_integrations.mail import send_message
        from ps_integrations.run_window import interval_end
        from ps_integrations.state_store import StateStore
        from ps_integrations.stores.csat import SUMMARY_JOB, CsatResults
        from ps_integrations.stores.sent_mail import SentMailLedger

        config = SummaryConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
        as_of = interval_end(context)
        period = period_of_run(context["params"]["period"], as_of, clock.now(), config.fiscal_year_start_month)
        store = StateStore()
        job = CsatSummary(
            CsatResults(store), ExportStore.from_variables(), SentMailLedger(store, SUMMARY_JOB), config, send_message
        )
        return job.run(period).to_dict()

    summarize_task()(summarise(prepare()))


ps_csat_summary()
