"""
### Opportunity sync: closed-won PS opportunities become GitLab engagement issues

Every 15 minutes, reads the Salesforce opportunities of record type "Professional Services Only"
whose `SystemModstamp` falls in the run's data interval (widened by a small overlap, with deleted
ones through `queryAll`), and:

- creates **one** issue per newly won opportunity in the PS project (labels `proposal::Closed_Won`,
  `ps::todo`, `close_qtr::…`, the engagement type; `sku::unknown` for SKUs found nowhere), with a
  hidden marker carrying the opportunity Id;
- on changes (amount, currency, close date, owner, stage, line items) rewrites only the managed part
  of the description and adds a note saying what changed from what to what - also while the
  opportunity is not won (then the note only); each note exactly once, even after a crash (a
  hidden change id, looked for before posting again);
- labels `ps-sync::opportunity-reopened` and notes it when a synced opportunity leaves Closed Won or
  is deleted (issues are never closed or deleted), and removes the label when it is won again. The
  sync never removes a label it did not set: labels sharing a scope with the team's are refused;
- writes the issue URL back to the opportunity when `writeback_field` is configured; an owed
  write-back stays in the state store and is retried every run until done.

Text from Salesforce is escaped so it cannot run quick actions, mention people or reference
anything in GitLab; ordinary titles stay exactly as typed. A won opportunity needs a Name and a
CloseDate. Records that fail are kept, retried on later runs and named when the run fails at the
end; the good ones still go through. Orgs with or without multi-currency both work (describe).

**Connections:** `salesforce_default`, `gitlab_default`, `ps_state` (state database),
`smtp_default` (failure mail).

**Variables:** `ps_opportunity_sync_config` (JSON, all optional): `project`
(default `professional-services/engagements`), `fiscal_year_start_month` (2), `quarter_label`
(`close_qtr::Q{quarter}{yy}`), `reopened_label`, `due_in_days` (30), `coordinator` (GitLab username
to assign), `writeback_field` (e.g. `GitLab_Issue_URL__c`; off when unset), `overlap_minutes` (5),
`gitlab_requests_per_minute` (600), `gitlab_notes_per_minute` (300), `org_currency` (USD, for orgs
without multi-currency), `concurrency` (8). Also `ps_alert_recipients`.
Engagement types per SKU: `include/ps_opportunity_sync/engagement_types.yml`.

**Re-running and backfilling:** safe. A run reads the window of its data interval; re-runs and
`airflow backfill create --dag-id ps_opportunity_sync --from-date … --to-date …` read the same
records: every opportunity a run of that window read before (recorded with the `SystemModstamp` it
had, re-read by Id, since our own write-back moves the stamp) plus whatever is stamped in the
window now; unchanged opportunities cause no GitLab write (content hash), and an issue is never
created twice (state store + marker lookup). From the trigger form: `since`/`until` re-sync a range
(also picks up changes that did not touch `SystemModstamp`, e.g. an account rename),
`opportunity_ids` syncs given records, `dry_run` logs the plan and writes nothing, `quarantine` /
`release` (with `reason`) park a failing record so it stops failing runs (it stays listed in every
summary) or bring it back.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations.conventions import dag_tags, default_args, summarize_task

CONFIG_VARIABLE = "ps_opportunity_sync_config"


def _config():
    """The job's settings; a bad setting fails the task at once (a retry would not fix it)."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowFailException

    from ps_integrations.domain.opportunity_sync import SyncConfig
    from ps_integrations.exceptions import ConfigurationError

    try:
        return SyncConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
    except ConfigurationError as error:
        raise AirflowFailException(str(error)) from error


def _ledger(context):
    from ps_integrations.state_store import StateStore
    from ps_integrations.stores.opportunity_sync import OpportunityLedger

    return OpportunityLedger(StateStore(), context["dag"].dag_id, context["run_id"])


@dag(
    dag_id="ps_opportunity_sync",
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("salesforce", "gitlab"),
    default_args=default_args(),
    dag_display_name="Opportunity sync (Salesforce → GitLab)",
    params={
        "since": Param(
            None, type=["null", "string"], description="Re-sync from this time (ISO 8601, UTC if no offset)"
        ),
        "until": Param(None, type=["null", "string"], description="Re-sync until this time (default: now)"),
        "opportunity_ids": Param([], type="array", description="Sync only these opportunity Ids"),
        "dry_run": Param(False, type="boolean", description="Log the plan with its changes; write nothing"),
        "quarantine": Param([], type="array", description="Opportunity Ids to quarantine"),
        "release": Param([], type="array", description="Opportunity Ids to release from quarantine"),
        "reason": Param(None, type=["null", "string"], description="Why they are quarantined"),
    },
)
def ps_opportunity_sync():
    @task(task_display_name="Prepare the state database and operator requests")
    def prepare(**context) -> list[str]:
        from ps_integrations.jobs.opportunity_sync import apply_operator_requests
        from ps_integrations.state_store import StateStore

        params = context["params"]
        config = _config()
        StateStore().apply_schema()
        if params["dry_run"]:
            return []
        ledger = _ledger(context)
        return apply_operator_requests(
            ledger, config.project, params["quarantine"], params["release"], params["reason"]
        )

    @task(task_display_name="Sync won opportunities to GitLab issues")
    def sync_opportunities(operator_requests: list[str], **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from ps_integrations.exceptions import ConfigurationError
        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.hooks.salesforce import SalesforceHook
        from ps_integrations.jobs.opportunity_sync import OpportunitySync, sync_window

        params = context["params"]
        config = _config()
        try:
            window = sync_window(context, config.overlap_minutes)
        except ConfigurationError as error:  # a bad since/until: a retry would not fix it
            raise AirflowFailException(str(error)) from error
        job = OpportunitySync(SalesforceHook(), GitLabHook(), _ledger(context), config, params["dry_run"])
        summary = job.run(window, params["opportunity_ids"])
        for request in operator_requests:
            summary.note(request)
        if window is not None:
            summary.note(f"window {window.start.isoformat()} to {window.end.isoformat()}")
        return summary.to_dict()

    summarize_task()(sync_opportunities(prepare()))


ps_opportunity_sync()
