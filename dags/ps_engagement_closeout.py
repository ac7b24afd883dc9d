"""
### Engagement close-out: the cost-vs-actual analysis filed in Salesforce, progress labels

Hourly over real data intervals. An engagement closes when its engagement issue (GitLab) is closed
within the interval. For each close:

- **the analysis:** budget (the opportunity's SOW amount and budgeted hours - the budget field, else
  quantity x hours per SKU from `include/ps_timesheet_rollup/rules.yml`) against actuals (approved
  hours by role and category, as the timesheet roll-up exported them, with its adjustments after lock;
  hours logged but not approved are listed apart), cost at the hourly cost per role
  (`include/ps_engagement_closeout/cost_rates.yml`), gross margin against the target (30%), percent
  complete and notes (overrun, below target, unapproved time, adjustments after lock). Time and
  materials engagements earn approved hours x the rate card's bill rate;
- **exports** `engagement_closeout/<project>-<iid>/<closed at>/`: `analysis.csv` (raw and rounded
  values), `report.html`, `README.md`;
- **filed in Salesforce, once per close:** `report.html` attached to the opportunity (a file first
  published there; a reopened and re-closed engagement adds a new version of the same file) and one
  Chatter post on the opportunity mentioning the configured Controller and Finance Business Partner,
  with margin, percent complete and the engagement issue's link (after a reopen: a short update). The
  file and the post carry a reference tag and are looked up by it before each upload or post, so a
  crash or a re-run never files twice.

Every run also labels the **open** engagements: SOW engagements (`sow_types`) get the highest milestone
reached (`progress::25/50/75/100`) from approved hours against budgeted hours, packaged ones
`progress::complete` / `progress::incomplete`, time and materials none. Only labels of the progress
scope change, and only when the milestone moves. An open engagement without opportunity link or budget
gets no label and is named in the run summary ("not labelled"); that alone does not fail the run.

Bad input (no opportunity link, no SOW amount or budgeted hours, no cost rate for a role, a deal in
another currency than the cost rates, an unknown mention user) is named by issue, field and system;
the other engagements go through and the run fails at the end. A failed close is retried by every
later run until it is filed or the issue is reopened.

**Connections:** `gitlab_default`, `salesforce_default` (needs the Chatter and Files permissions:
create ContentVersion, post to record feeds), `ps_state`, the exports store (`ps_exports_base`),
`smtp_default` (failure mail).

**Variables:** `ps_engagement_closeout_config` (JSON): `controller` and `finance_business_partner`
(Salesforce username or e-mail; required to file), `engagements_project`, `group` (for job titles ->
roles), `budget_field` (`Budgeted_Hours__c`), `currency_field` (`CurrencyIsoCode`; `""` in a
single-currency org), `progress_labels` (true), `progress_label_prefix` (`progress::`), `milestones`
([25, 50, 75, 100]), `sow_types` (["Custom SOW"]), `packaged_complete_label`,
`packaged_incomplete_label`. Also `ps_exports_base`, `ps_alert_recipients`.

**Re-running and backfilling:** safe. Closes are read by the data interval; each close is keyed by
the issue and its close time in the state store and looked up in Salesforce by its tag before any
write, so re-runs and `airflow backfill create --dag-id ps_engagement_closeout ...` file nothing twice.
Trigger-form params: `engagement_iids` (close out these issues' current close now), `since`/`until`
(a manual window).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations.conventions import dag_tags, default_args, summarize_task

CONFIG_VARIABLE = "ps_engagement_closeout_config"


@dag(
    dag_id="ps_engagement_closeout",
    schedule=CronDataIntervalTimetable("5 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("gitlab", "salesforce", "finance"),
    default_args=default_args(),
    dag_display_name="Engagement close-out: cost vs actual, progress labels",
    params={
        "engagement_iids": Param([], type="array", description="Engagement issue iids to close out now"),
        "since": Param(None, type=["null", "string"], description="Manual window start (ISO 8601)"),
        "until": Param(None, type=["null", "string"], description="Manual window end (ISO 8601; default now)"),
    },
)
def ps_engagement_closeout():
    @task(task_display_name="Prepare the state database")
    def prepare() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Analyse closed engagements, file them in Salesforce, label progress")
    def close_out(_schema: list[str], **context) -> dict:
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from ps_integrations.exceptions import ConfigurationError
        from ps_integrations.exports import ExportStore
        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.hooks.salesforce import SalesforceHook
        from ps_integrations.jobs.engagement_closeout import CloseoutConfig, EngagementCloseout, closeout_window
        from ps_integrations.state_store import StateStore
        from ps_integrations.stores.engagement_closeout import CloseoutLedger

        params = context["params"]
        try:
            config = CloseoutConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
            window = closeout_window(context)
        except ConfigurationError as error:
            raise AirflowFailException(str(error)) from error  # a retry would not fix it
        ledger = CloseoutLedger(StateStore(), context["run_id"])
        job = EngagementCloseout(GitLabHook(), SalesforceHook(), ledger, ExportStore.from_variables(), config)
        summary = job.run(window, [int(iid) for iid in params["engagement_iids"]])
        if window is not None:
            summary.note(f"window {window.start.isoformat()} to {window.end.isoformat()}")
        return summary.to_dict()

    summarize_task()(close_out(prepare()))


ps_engagement_closeout()
