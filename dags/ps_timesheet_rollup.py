"""
### Timesheet roll-up: approved PS hours to finance (work in progress, issue #8)

Weekly (Mondays 06:00 UTC) over real data intervals. Reads approval issues of the time-tracking
project (`timesheet::<period>` plus `ManagerCertifiedTimesheet` → `HeadOfPSApproved` →
`FinanceApproved`; issues without an engineer or period, for a non-engineer, or with labels out of
order are reported, never trusted) and the group's timelogs through GitLab GraphQL. Every period
whose engineers reached the release level and ended by the interval's end is exported under
`timesheets/<period>/`: `approved_hours.csv`, `utilization.csv`, `engagement_progress.csv`,
`findings.csv`, `adjustments.csv` (when a locked period changed) and `manifest.json`. Hours are
rounded per timelog to the quarter hour (half up) and dated in the business time zone.
Unapproved hours are listed in the summary, not exported.

Not yet: engagement budgets and SKUs from the opportunity, the finance mail, the rate card per role.

**Connections:** `gitlab_default`, `ps_state`, `smtp_default`, the exports connection.

**Variables:** `ps_timesheet_rollup_config` (JSON, all optional): `group`, `engagements_project`,
`time_tracking_project`, `business_timezone` (UTC), `release_level` (2 = Head of PS),
`weekly_minimum_hours` (40), `hourly_rate_time_and_materials`, `currency`,
`time_and_materials_types`. Also `ps_exports_base`, `ps_exports_conn_id`.

**Re-running and backfilling:** safe. Exported (period, engineer) pairs are locked in the state
store: a re-run or a backfill writes the same files from what was exported, and a later change to
a locked timelog becomes a row of `adjustments.csv` instead of a silent re-export. Trigger with
`period` (e.g. `2026-W44`) to rebuild one period.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ps_integrations.conventions import dag_tags, default_args, summarize_task

CONFIG_VARIABLE = "ps_timesheet_rollup_config"


@dag(
    dag_id="ps_timesheet_rollup",
    schedule=CronDataIntervalTimetable("0 6 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=dag_tags("gitlab", "finance"),
    default_args=default_args(),
    dag_display_name="Timesheet roll-up (GitLab → finance)",
    params={"period": Param(None, type=["null", "string"], description="Rebuild one period, e.g. 2026-W44")},
)
def ps_timesheet_rollup():
    @task(task_display_name="Prepare the state database")
    def prepare() -> list[str]:
        from ps_integrations.state_store import StateStore

        return StateStore().apply_schema()

    @task(task_display_name="Roll up approved hours and export")
    def roll_up(_schema: list[str], **context) -> dict:
        import pendulum as clock
        from airflow.sdk import Variable

        from ps_integrations.exports import ExportStore
        from ps_integrations.hooks.gitlab import GitLabHook
        from ps_integrations.jobs.timesheets import RollupConfig, TimesheetRollup
        from ps_integrations.state_store import StateStore

        config = RollupConfig.from_mapping(Variable.get(CONFIG_VARIABLE, default={}, deserialize_json=True))
        now = clock.now("UTC")
        end = context.get("data_interval_end")
        start = context.get("data_interval_start")
        until = end.date() if end is not None and start is not None and end > start else now.date()
        job = TimesheetRollup(GitLabHook(), StateStore(), ExportStore.from_variables(), config, context["run_id"])
        return job.run(until, context["params"]["period"], now.date(), now).to_dict()

    summarize_task()(roll_up(prepare()))


ps_timesheet_rollup()
