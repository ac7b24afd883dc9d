"""What one reconciliation found (step 3), as the finance issue and mail tell it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ps_integrations.domain.sku_reconciliation import ProblemKey, Row, needs_action
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

    @property
    def action_rows(self) -> list[Row]:
        return [row for row in self.rows if needs_action(row)]


def browse_url(template: str, folder: str) -> str:
    """``exports_browse_url`` with ``{folder}`` filled in; "" when none is configured."""
    return template.replace("{folder}", folder) if template else ""
