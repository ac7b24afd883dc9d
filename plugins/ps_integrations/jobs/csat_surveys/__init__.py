"""CSAT surveys at engagement close (issue #9): ``CsatSurveys`` is the job (``job.py``), its settings
are in ``config.py``, the mail in ``mail.py`` and what it needs from other systems in ``ports.py``."""

from ps_integrations.jobs.csat_surveys.config import CONFIG_VARIABLE, ResponseSite, SurveyConfig
from ps_integrations.jobs.csat_surveys.job import CsatSurveys

__all__ = ["CONFIG_VARIABLE", "CsatSurveys", "ResponseSite", "SurveyConfig"]
