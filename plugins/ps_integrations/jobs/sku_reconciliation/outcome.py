"""What one reconciliation found (step 3), as the finance issue and mail tell it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ps_integrations.domain.price_book import FinanceItem, needs_any_action
from ps_integrations.domain.sku_reconciliation import ProblemKey, Row
from ps_integrations.jobs.sku_reconciliation.merge_request import MergeRequestOutcome
from ps_integrations.jobs.sku_reconciliation.sources import Sources


@dataclass(frozen=True)
class Outcome:
    as_of: date
    rows: list[Row]
    counts: dict[str, int]
    folder: str
    new: list[ProblemKey]
    resolved: list[ProblemKey]
    duplicated_ids: list[str]
    sources: Sources
    browse_url: str = ""  # where finance opens the export folder in a browser ("" when not configured)
    # issue #19: what services.yml cannot fix (with the missing SKU-process step), the merge request,
    # rows per Salesforce status (empty when Salesforce is not read)
    finance_items: tuple[FinanceItem, ...] = ()
    merge_request: MergeRequestOutcome | None = None
    salesforce_counts: dict[str, int] = field(default_factory=dict)

    @property
    def action_rows(self) -> list[Row]:
        """Rows someone must act on: in Zuora or services.yml, or in Salesforce."""
        return [row for row in self.rows if needs_any_action(row)]


def browse_url(template: str, folder: str) -> str:
    """``exports_browse_url`` with ``{folder}`` filled in; "" when none is configured."""
    return template.replace("{folder}", folder) if template else ""
