"""CSAT summaries for PS leadership (issue #10): ``CsatSummary`` is the job (``job.py``), the report's
rendering is in ``report.py`` and the leadership mail in ``mail.py``."""

from ps_integrations.jobs.csat_summary.job import CONFIG_VARIABLE, CsatSummary, SummaryConfig, period_of_run

__all__ = ["CONFIG_VARIABLE", "CsatSummary", "SummaryConfig", "period_of_run"]
