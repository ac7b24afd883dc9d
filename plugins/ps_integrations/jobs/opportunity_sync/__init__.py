"""The opportunity sync (Salesforce -> GitLab): ``job`` tells the story of a run; ``reading``,
``writing`` and ``effects`` are its steps; ``ports`` names what it needs from each system."""

from ps_integrations.jobs.opportunity_sync.job import OpportunitySync, apply_operator_requests
from ps_integrations.jobs.opportunity_sync.reading import stamp_key, sync_window

__all__ = ["OpportunitySync", "apply_operator_requests", "stamp_key", "sync_window"]
