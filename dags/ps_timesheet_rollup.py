"""
### Timesheet roll-up: approved PS hours to finance

Weekly, Mondays 06:00 in the business time zone (`PS_BUSINESS_TIMEZONE`, UTC by default; the
variable's `business_timezone` must agree or the run fails), over real data intervals. Reads the
approval issues of the time-tracking project (`timesheet::<period>` plus `ManagerCertifiedTimesheet`
→ `HeadOfPSApproved` → `FinanceApproved`; issues without an engineer or period, for someone who is
not a PS engineer, or with labels out of order are reported,
never trusted) and the group's timelogs through GitLab GraphQL. Every period whose engineers
reached the release level, ended by the interval's end and was not exported yet is exported under
`timesheets/<period>/` - late approvals of older periods are caught up:
`approved_hours.csv`, `utilization.csv`, `engagement_progress.csv`, `findings.csv`,
`adjustments.csv` (changes to locked periods found since the last export), `manifest.json` and a
README.md data dictionary. Hours are rounded per engineer, day and engagement to the quarter hour
(half up; the rules' `rounding`: `per_day`, `per_entry` or `none`), with the unrounded minutes in
every row and a rounded-vs-logged check per engineer in the manifest, and dated in the business
time zone. Future-dated timelogs and timelogs without an issue are findings, never paid. A period
that has not ended is never exported (a manual run asking for one fails; `preview` only computes).
When a period ends, one certification issue per PS engineer is opened for the manager (hours
table, spreadsheet, the Time Tracking epic where GitLab has epics) and kept current until the
manager adds `ManagerCertifiedTimesheet`. Budgets come from the engagement's opportunity in Salesforce
(`budget_field`, else quantity x hours per SKU from `include/ps_timesheet_rollup/rules.yml`, which
also holds role targets, job titles, the rate card and the time-and-materials engagement types).
Finance gets one mail per run listing what landed (once per export version, also across a kill
during the send). Unapproved hours are listed in the run summary, never exported. A failed
Salesforce budget lookup exports and locks nothing that needs a budget; the run fails naming the
opportunities and the next run exports them. Categories come from the issue's parent work item
where GitLab has one, else labels or the configured `category_issues`.

**Connections:** `gitlab_default`, `salesforce_default`, `ps_state`, `smtp_default`, the exports
connection.

**Variables:** `ps_timesheet_rollup_config` (JSON, all optional): `group`, `engagements_project`,
`time_tracking_project`, `business_timezone`, `period_length` (`week` or `month` for the month-end
report), `period_label_prefix`, `approval_labels`, `release_level` (2 = Head of PS),
`weekly_minimum_hours` (40), `budget_field` (`Budgeted_Hours__c`), `adjustment_lookback_weeks` (8),
`finance_recipients`. Also `ps_exports_base`, `ps_exports_conn_id`.

**Re-running and backfilling:** safe. Exported (period, engineer) pairs are locked in the state
store and each export's files are kept there: a re-run or a backfill of a period with nothing new
writes the same bytes; a late approval adds the engineer without touching what was exported; a
later change to a locked timelog becomes a row of the next export's `adjustments.csv`, however old
the period: locked periods inside `adjustment_lookback_weeks` are read in full every run; older ones
are re-read when GitLab's timelog count or total for the period (a few aliased GraphQL count
queries per run) moved since the last check. (A change that keeps both figures, such as a timelog
moved to another issue, is found only inside the look-back.) Trigger with
`period` (e.g. `2026-W44`) or `period_start`/`period_end` (dates) to rebuild chosen periods.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations import clock
from ps_integrations.alerts import finance_deadline
from ps_integrations.conventions import dag_tags, default_args, summarize_task

CONFIG_VARIABLE = "ps_timesheet_rollup_config"
BUSINESS_TIMEZONE = os.environ.get("PS_BUSINESS_TIMEZONE", "UTC")


@dag(
    dag_id="ps_timesheet_rollup",
    schedule=CronDataIntervalTimetable("0 6 * * 1", timezone=BUSINESS_TIMEZONE),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("gitlab", "finance"),
    default_args=default_args(),
    deadline=finance_deadline(timedelta(hours=2), "The approved-hours export"),
    dag_display_name="Timesheet roll-up (GitLab → finance)",
    params={
        "period": Param(None, type=["null", "string"], description="Rebuild one period, e.g. 2026-W44 or 2026-11"),
        "period_start": Param(
            None, type=["null", "string"], format="date", description="Rebuild every period from this date"
        ),
        "period_end": Param(None, type=["null", "string"], format="date", description="... up to this date"),
        "preview": Param(
            False,
            type="boolean",
            description="Read and compute only: no export, lock, mail or issue (how to look at an unfinished period)",
        ),
    },
)
def ps_timesheet_rollup():
    @task(task_display_name="Prepare the state database")
    def prepare() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Roll up approved hours and export")
    def roll_up(_schema: list[str], **context) -> dict:
        from zoneinfo import ZoneInfo

        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from ps_integrations.exceptions import ConfigurationError
        from ps_integrations.exports import ExportStore
        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.hooks.salesforce import SalesforceHook
        from ps_integrations.jobs.timesheets import (
            JOB,
            ExportLedger,
            RollupConfig,
            TimesheetRollup,
            check_time_zones,
            load_rules,
            selected_periods,
        )
        from ps_integrations.mail import send_html_mail
        from ps_integrations.run_window import run_window
        from ps_integrations.state_store import StateStore
        from ps_integrations.stores.sent_mail import SentMailLedger

        params = context["params"]
        try:
            config = RollupConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
            check_time_zones(BUSINESS_TIMEZONE, config)
            window = run_window(context, default=timedelta(weeks=1), now=clock.now())  # manual runs: up to now
            until = window.end.astimezone(ZoneInfo(config.business_timezone)).date()
            selection = selected_periods(
                params["period"], params["period_start"], params["period_end"], config.period_length
            )
            store = StateStore()
            job = TimesheetRollup(
                GitLabHook(),
                SalesforceHook(),
                ExportLedger(store),
                SentMailLedger(store, JOB),
                send_html_mail,
                ExportStore.from_variables(),
                config,
                load_rules(),
                context["run_id"],
            )
            today = clock.today(config.business_timezone)
            summary = job.run(until, selection, today, clock.now(), preview=bool(params.get("preview")))
        except ConfigurationError as error:
            raise AirflowFailException(str(error)) from error  # fix the setting or the params; a retry will not help
        return summary.to_dict()

    summarize_task()(roll_up(prepare()))


ps_timesheet_rollup()
