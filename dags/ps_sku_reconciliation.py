"""
### SKU reconciliation: Zuora's product catalog against services.yml

Daily. Reads Zuora's `Product`, `ProductRatePlan`, `ProductRatePlanCharge` and
`ProductRatePlanChargeTier` (SOAP API; one ZOQL query each, joined here) and `services.yml` from its
GitLab repository (or a local file), and reconciles them as of the data interval's end date: one
row per SKU, currency, services.yml entry and Zuora product, with a status (most severe first:
`invalid_services_yml_entry`, `sku_needs_quotes`, `sku_spelling_differs`,
`duplicate_services_yml_id`, `duplicate_sku`, `no_sku`, `incomplete_in_zuora`, `missing_in_zuora`,
`missing_in_services_yml`, `retired_in_zuora`, `not_yet_effective`, `no_price_in_zuora`,
`price_mismatch`, `name_mismatch`, `not_compared`, `match`; the README and the workbook's Summary
sheet say what each means), an action naming the system to change (Zuora is upstream: services.yml
follows Zuora; a SKU missing in Zuora needs a finance SKU request), and both sides' values.

Writes `sku_reconciliation/<as_of>/` to the exports store: `reconciliation.csv` (UTF-8 with BOM),
`reconciliation.xlsx` (Summary, Needs action, All rows), `manifest.json` and a `README.md` data
dictionary. Mails finance (text and HTML, both files attached, the finance issue linked) the rows
that need action, and keeps exactly one issue in the finance project current while anything needs
action (closed when nothing does, reopened if drift returns). The summary says which problems are
new and which were resolved since the previous `as_of`. A YAML syntax error in services.yml fails
the run with file, line and column and mails finance that nothing could be reconciled; an unusable
entry is reported by id and reason, the rest are reconciled, and the run fails at the end.

**Salesforce and the merge request (issue #19, both off unless configured):** with `salesforce`
on, Salesforce's PS products (`Product2` of `salesforce_product_families`) and their entries in the
standard price book (and `salesforce_price_book`) give every row Salesforce's side: sellable or not,
Salesforce's price, a status (`inactive_in_salesforce`, `not_sellable_in_salesforce`,
`sellable_but_retired_in_zuora`, `price_differs_in_salesforce`, `not_compared`, `match`), the action
and the missing step of the SKU process; the finance issue lists what services.yml cannot fix. With
`services_yml_merge_request` on, one merge request from `services_yml_merge_request_branch` makes
services.yml follow Zuora (prices, names, retired products, missing PS products) with a minimal
diff; later runs update it, it is closed when nothing is left, a person's commit on its branch
makes the job leave it alone (and say so); the job never merges it.

**Connections:** `zuora_default`, `gitlab_default` (services.yml, the finance issue, the merge
request), `salesforce_default` (with `salesforce` on), `ps_state`, `smtp_default`, and the exports
connection.

**Variables:** `ps_sku_reconciliation_config` (JSON, all optional): `services_yml_project`,
`services_yml_path` (`data/services.yml`), `services_yml_ref` (`main`), `services_yml_local_path`
(read a file instead of GitLab), `finance_project`, `finance_recipients`, `zuora_batch_size`
(2000), `exports_browse_url` (where finance opens the export folder in a browser; `{folder}` is
replaced), `salesforce` (false), `salesforce_product_families`, `salesforce_price_book`,
`salesforce_org_currency` (`USD`), `services_yml_merge_request` (false),
`services_yml_merge_request_branch`, `services_yml_merge_request_labels`. Also `ps_exports_base`,
`ps_exports_conn_id`, `ps_alert_recipients`.

**Re-running and backfilling:** safe. A run recomputes and overwrites its `as_of` folder; the same
inputs give byte-identical data files. The finance mail goes once per `as_of` and content, also when
a run is killed during the SMTP send: the next run does not send it again and says
`finance mail of <as_of> INTERRUPTED` in its summary (check the finance mailbox). The finance issue is
updated, never duplicated. A manual run without `as_of` reconciles as of today (UTC). Trigger with
`as_of` (YYYY-MM-DD) and `services_yml_ref` to reconcile another date or catalog version;
`airflow backfill create --dag-id ps_sku_reconciliation --from-date … --to-date …` re-creates a
range of days.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations import clock
from ps_integrations.alerts import finance_deadline
from ps_integrations.conventions import dag_tags, default_args, summarize_task

CONFIG_VARIABLE = "ps_sku_reconciliation_config"


@dag(
    dag_id="ps_sku_reconciliation",
    schedule=CronDataIntervalTimetable("0 6 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("zuora", "gitlab", "salesforce", "finance"),
    default_args=default_args(),
    deadline=finance_deadline(timedelta(hours=1), "The SKU reconciliation export"),
    dag_display_name="SKU reconciliation (Zuora ↔ services.yml)",
    params={
        "as_of": Param(
            None, type=["null", "string"], format="date", description="Reconcile as of this date (YYYY-MM-DD)"
        ),
        "services_yml_ref": Param(None, type=["null", "string"], description="Branch, tag or commit of services.yml"),
    },
)
def ps_sku_reconciliation():
    @task(task_display_name="Prepare the state database")
    def prepare() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Reconcile Zuora with services.yml and export")
    def reconcile(_schema: list[str], **context) -> dict:
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from ps_integrations.domain.services_catalog import CatalogSyntaxError
        from ps_integrations.exports import ExportStore
        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.hooks.zuora import ZuoraHook
        from ps_integrations.jobs.sku_reconciliation import ReconciliationConfig, SkuReconciliation
        from ps_integrations.run_window import interval_end, parse_moment
        from ps_integrations.state_store import StateStore
        from ps_integrations.stores.sku_reconciliation import ReconciliationLedger

        params = context["params"]
        # a scheduled run reconciles as of its interval's end; a manual one as of `as_of`, else today (UTC)
        as_of = (
            parse_moment(params["as_of"], "as_of").date()
            if params["as_of"]
            else (interval_end(context) or clock.now()).date()
        )
        config = ReconciliationConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
        records = ReconciliationLedger(StateStore())
        gitlab = GitLabHook()
        salesforce = None
        if config.salesforce:
            from ps_integrations.hooks.salesforce import SalesforceHook

            salesforce = SalesforceHook()
        job = SkuReconciliation(
            ZuoraHook(),
            gitlab,
            records,
            ExportStore.from_variables(),
            config,
            context["run_id"],
            salesforce=salesforce,
            merge_requests=gitlab if config.services_yml_merge_request else None,
        )
        try:
            summary = job.run(as_of, params["services_yml_ref"], clock.now())
        except CatalogSyntaxError as error:
            raise AirflowFailException(str(error)) from error  # fix the file; retrying will not help
        summary.note(f"as_of {as_of.isoformat()}")
        return summary.to_dict()

    summarize_task()(reconcile(prepare()))


ps_sku_reconciliation()
