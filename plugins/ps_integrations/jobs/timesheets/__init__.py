"""Timesheet roll-up (issue #8), one module per concern (issue #16): ``config`` (settings and
checks), ``ports`` (what it needs, as Protocols), ``reads`` (GitLab and Salesforce reads),
``export_step`` (one period's export and locks), ``finance_mail``, ``certification`` and ``job``
(the story: ``TimesheetRollup.run``). The ledger is ``stores/timesheets.py``; the figures are in
``domain/timesheet*.py``."""

from ps_integrations.jobs.timesheets.config import (
    JOB,
    RollupConfig,
    check_time_zones,
    load_rules,
    refuse_unfinished,
    selected_periods,
)
from ps_integrations.jobs.timesheets.job import TimesheetRollup, collector_paused
from ps_integrations.stores.timesheets import ExportLedger  # where the close-out reads the roll-up's ledger

__all__ = [
    "JOB",
    "ExportLedger",
    "RollupConfig",
    "TimesheetRollup",
    "check_time_zones",
    "collector_paused",
    "load_rules",
    "refuse_unfinished",
    "selected_periods",
]
