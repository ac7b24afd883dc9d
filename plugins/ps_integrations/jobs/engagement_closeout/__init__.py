"""The engagement close-out: ``job`` tells the story of a run; ``filing`` (Salesforce), ``progress``
(labels on open engagements) and ``report`` (the files and the post) are its steps; ``ports`` names
what it needs from each system."""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ps_integrations.jobs.engagement_closeout.config import ClosedIssue, CloseoutConfig, Opportunity
from ps_integrations.jobs.engagement_closeout.job import EngagementCloseout
from ps_integrations.jobs.engagement_closeout.report import analysis_files, raw, report_templates
from ps_integrations.run_window import RunWindow, run_window


def closeout_window(context: Mapping[str, Any]) -> RunWindow | None:
    """The closes a run reads: ``since``/``until`` params, else the data interval, else (a manual run)
    the last hour; none when only ``engagement_iids`` are given (then just those issues)."""
    params = context.get("params") or {}
    since, until = params.get("since"), params.get("until")
    if not (since or until) and params.get("engagement_iids"):
        return None
    return run_window(context, since=since, until=until, default=timedelta(hours=1))


__all__ = [
    "ClosedIssue",
    "CloseoutConfig",
    "EngagementCloseout",
    "Opportunity",
    "analysis_files",
    "closeout_window",
    "raw",
    "report_templates",
]
