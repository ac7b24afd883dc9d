"""
### CSAT surveys at engagement close

Hourly over real data intervals. An engagement closes when its engagement issue (GitLab) is closed
within the interval; the recipients are the opportunity's contact roles in Salesforce (the primary
contact and the configured roles), minus contacts opted out of e-mail in Salesforce, anyone who
unsubscribed here, and anyone surveyed within `throttle_days` of the interval (across engagements).
Each contact gets one survey per engagement, ever (a reopened and re-closed engagement does not
send again), and one reminder after `reminder_days` without an answer or opt-out. The mail has
text and HTML parts, five rating links, an unsubscribe link and RFC 8058 one-click headers.
Customers answer on the response service (`python -m ps_integrations.csat_service`, its own
process). Every answer of 1 or 2 raises one follow-up issue assigned to the engagement's project
manager. A survey is recorded as "sending" before the SMTP call: one left behind by a crash is
never resent automatically - the run fails naming it until an operator releases it.

Outside production (`environment` is not `production`) only the `allow_list` is mailed. Customer
e-mail addresses appear masked in logs; comments never do.

**Connections:** `gitlab_default`, `salesforce_default`, `smtp_default`, `ps_state`, `ps_csat`
(host: the response service's public URL; password: the token signing secret shared with it).

**Variables:** `ps_csat_surveys_config` (JSON, all optional): `engagements_project`,
`contact_roles`, `throttle_days` (90), `reminder_days` (5), `token_days` (60: how long rating links
work, the one link-lifetime setting; unsubscribe links never expire), `environment`, `allow_list`
(addresses or domains), `legal_footer`, `sender` (the `Message-ID` uses its domain), `company_name`
(named on the landing pages), `reply_to` (`project_manager`: the PM's public GitLab e-mail, else
`ps_mailbox`; or an address), `ps_mailbox`, `engagement_name_field` (the Opportunity field with the
customer-facing engagement name; empty: "account - main product"), `followup_project`,
`followup_labels`, `engagement_types`. The run summary counts skipped contacts per reason.

**Re-running and backfilling:** safe. Closes are read by the data interval and the throttle and
reminder windows are measured from it, so a backfill decides like the original run; surveys,
reminders and follow-up issues are keyed in the state store and never repeated. Trigger-form
params: `dry_run` (log what would be sent; record and send nothing), `release_surveys` (survey ids
whose interrupted send may go out once more), `since`/`until` for a manual window.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations.conventions import dag_tags, default_args, summarize_task


@dag(
    dag_id="ps_csat_surveys",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("gitlab", "salesforce", "csat"),
    default_args=default_args(),
    dag_display_name="CSAT surveys at engagement close",
    params={
        "dry_run": Param(False, type="boolean", description="Log what would be sent; send and record nothing"),
        "release_surveys": Param([], type="array", description="Survey ids whose interrupted send may be retried"),
        "since": Param(None, type=["null", "string"], description="Manual window start (ISO 8601)"),
        "until": Param(None, type=["null", "string"], description="Manual window end (ISO 8601; default now)"),
    },
)
def ps_csat_surveys():
    @task(task_display_name="Prepare the state database")
    def prepare() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Send surveys, reminders and follow-ups")
    def send_surveys(_schema: list[str], **context) -> dict:
        from airflow.sdk import Variable

        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.hooks.salesforce import SalesforceHook
        from ps_integrations.jobs.csat_surveys import CONFIG_VARIABLE, CsatSurveys, ResponseSite, SurveyConfig
        from ps_integrations.mail import send_message
        from ps_integrations.run_window import run_window
        from ps_integrations.state_store import StateStore
        from ps_integrations.stores.csat import SurveyLedger

        params = context["params"]
        config = SurveyConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
        window = run_window(context, since=params["since"], until=params["until"], default=timedelta(hours=1))
        job = CsatSurveys(
            GitLabHook(),
            SalesforceHook(),
            SurveyLedger(StateStore(), context["run_id"]),
            ResponseSite.from_connection(),
            config,
            send_message,
            params["dry_run"],
        )
        summary = job.run(window.start, window.end, list(params["release_surveys"]))
        summary.note(f"window {window.start.isoformat()} to {window.end.isoformat()}")
        return summary.to_dict()

    summarize_task()(send_surveys(prepare()))


ps_csat_surveys()
