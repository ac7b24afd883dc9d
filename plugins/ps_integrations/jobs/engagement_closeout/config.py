"""The close-out's settings and the records it works on: a closed engagement issue and the
opportunity it was sold as."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from ps_integrations.domain.engagement_closeout import Budget
from ps_integrations.domain.engagements import ENGAGEMENT_TYPES, is_engagement, moment
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.hooks.gitlab import GitLabIssue

SOQL_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
CONFIG_NAME = "ps_engagement_closeout_config"


@dataclass(frozen=True)
class CloseoutConfig:
    engagements_project: str = "professional-services/engagements"
    group: str = "professional-services"
    controller: str = ""  # Salesforce username or e-mail of the Controller
    finance_business_partner: str = ""  # ... of the Finance Business Partner (Sales)
    budget_field: str = "Budgeted_Hours__c"
    currency_field: str = "CurrencyIsoCode"  # "" for a single-currency org (the cost rates' currency)
    progress_labels: bool = True
    progress_label_prefix: str = "progress::"
    milestones: tuple[int, ...] = (25, 50, 75, 100)
    sow_types: tuple[str, ...] = ("Custom SOW",)
    # issues of the project carrying one of these labels are engagements (others, e.g. CSAT follow-ups, are not)
    engagement_types: tuple[str, ...] = ENGAGEMENT_TYPES
    packaged_complete_label: str = "progress::complete"
    packaged_incomplete_label: str = "progress::incomplete"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> CloseoutConfig:
        from ps_integrations.settings import settings_from_mapping

        config = settings_from_mapping(cls, data, CONFIG_NAME)
        for name in ("budget_field", "currency_field"):
            value = getattr(config, name)
            if (value or name == "budget_field") and not SOQL_FIELD.match(value):
                raise ConfigurationError(f"{CONFIG_NAME}: {name} {value!r} is not a Salesforce field name")
        if not config.milestones or any(not 0 < int(m) <= 100 for m in config.milestones):
            raise ConfigurationError(f"{CONFIG_NAME}: milestones must be percentages in (0, 100]")
        if not config.progress_label_prefix.endswith("::"):
            raise ConfigurationError(f"{CONFIG_NAME}: progress_label_prefix must end in '::' (a scope)")
        return config

    @property
    def progress_scope(self) -> str:
        return self.progress_label_prefix[:-2]

    @property
    def all_engagement_types(self) -> tuple[str, ...]:
        return (*self.engagement_types, *self.sow_types)

    def is_engagement(self, labels: Iterable[str]) -> bool:
        return is_engagement(labels, self.all_engagement_types)


@dataclass(frozen=True)
class ClosedIssue:
    url: str
    iid: int
    title: str
    closed_at: str  # ISO 8601 UTC, seconds
    description: str
    labels: tuple[str, ...]
    logged_seconds: int

    @property
    def account(self) -> str:
        return self.title.split(":", 1)[0].strip() if ":" in self.title else ""


def closed_issue(issue: GitLabIssue) -> ClosedIssue | None:
    """The close of an issue, or None while it is open."""
    closed = moment(issue.closed_at) if issue.state == "closed" else None
    if closed is None:
        return None
    return ClosedIssue(
        issue.web_url,
        issue.iid,
        issue.title.replace("\u200b", ""),
        closed.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        issue.description,
        issue.labels,
        issue.total_time_spent,
    )


@dataclass(frozen=True)
class Opportunity:
    id: str
    name: str
    account: str
    budget: Budget
