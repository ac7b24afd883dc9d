"""Settings of ``ps_csat_surveys``: the job's variable and where the response service answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ps_integrations.domain.csat import UNSUBSCRIBE, make_token
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.hooks.salesforce_records import SOQL_FIELD

CONFIG_VARIABLE = "ps_csat_surveys_config"
CSAT_CONN_ID = "ps_csat"
REPLY_TO_PROJECT_MANAGER = "project_manager"


@dataclass(frozen=True)
class SurveyConfig:
    engagements_project: str = "professional-services/engagements"
    contact_roles: tuple[str, ...] = ("Decision Maker", "Economic Buyer", "Executive Sponsor")
    throttle_days: int = 90
    reminder_days: int = 5
    token_days: int = 60  # how long rating links work; unsubscribe links never expire
    environment: str = "development"  # anything but "production" mails only the allow-list
    allow_list: tuple[str, ...] = ()
    legal_footer: str = (
        "GitLab Inc., 268 Bush Street #350, San Francisco, CA 94104. You receive this message because you "
        "were a contact on a Professional Services engagement."
    )
    sender: str = "GitLab Professional Services <ps-surveys@example.com>"
    company_name: str = "GitLab"  # named on the landing pages: "<company> Professional Services"
    # Reply-To: "project_manager" (the engagement PM's public GitLab e-mail, else ps_mailbox) or an address
    reply_to: str = REPLY_TO_PROJECT_MANAGER
    ps_mailbox: str = "professional-services@example.com"
    # The customer-facing engagement name: this Opportunity field (e.g. Customer_Facing_Name__c) when
    # set and filled, else "<account> - <offering>" (the deal's main product, else the engagement type)
    engagement_name_field: str = ""
    followup_project: str = "professional-services/engagements"
    followup_labels: tuple[str, ...] = ("csat::follow-up",)
    engagement_types: tuple[str, ...] = (
        "Implementation",
        "Migration",
        "Training",
        "Embedded Engineer",
        "Consulting",
        "Health Check",
        "Integration",
        "Custom SOW",
    )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SurveyConfig:
        from ps_integrations.settings import settings_from_mapping

        return settings_from_mapping(cls, data, CONFIG_VARIABLE)

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def extra_opportunity_fields(self) -> tuple[str, ...]:
        return (self.engagement_name_field,) if self.engagement_name_field else ()

    def __post_init__(self) -> None:
        if self.engagement_name_field and not SOQL_FIELD.fullmatch(self.engagement_name_field):
            raise ConfigurationError(
                f"{CONFIG_VARIABLE} engagement_name_field {self.engagement_name_field!r} is not a "
                "Salesforce field name (Opportunity field such as Customer_Facing_Name__c)"
            )
        if self.token_days < 1:
            raise ConfigurationError(f"{CONFIG_VARIABLE} token_days must be at least 1, got {self.token_days}")


@dataclass(frozen=True)
class ResponseSite:
    """Where the response service answers and the secret its tokens are signed with (``ps_csat``)."""

    base_url: str
    secret: str = field(repr=False)

    @classmethod
    def from_connection(cls, conn_id: str = CSAT_CONN_ID) -> ResponseSite:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(conn_id)
        base = str(connection.host or "").rstrip("/")
        if not base.startswith(("https://", "http://")) or not connection.password:
            raise ConfigurationError(
                f"connection {conn_id!r} needs host = the response service's public URL (https://...) "
                "and password = the token signing secret"
            )
        return cls(base, str(connection.password))

    def links(self, survey_id: str, expires: datetime) -> tuple[list[tuple[int, str]], str]:
        """Five rating links that work until ``expires``, and an unsubscribe link that never expires."""
        respond = make_token(self.secret, survey_id, "respond", expires)
        unsubscribe = make_token(self.secret, survey_id, UNSUBSCRIBE)
        return [(score, f"{self.base_url}/r/{respond}?score={score}") for score in range(1, 6)], (
            f"{self.base_url}/u/{unsubscribe}"
        )
