"""What ``ps_csat_surveys`` needs from the systems it works with (the DAG wires the real hooks and the
state store's ``SurveyLedger``; tests wire small in-memory fakes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol

from ps_integrations.hooks.gitlab import GitLabIssue, GitLabUser
from ps_integrations.hooks.salesforce_records import OpportunityContacts
from ps_integrations.stores.csat import LowScore, NewSurvey, SurveyMail

SendMail = Callable[[EmailMessage], None]


class IssueTracker(Protocol):
    """GitLab: engagement issues, follow-up issues and the project managers behind them."""

    def list_issues(
        self,
        project: str,
        *,
        state: str = ...,
        labels: tuple[str, ...] = ...,
        updated_after: str | None = ...,
        order_by: str = ...,
        sort: str = ...,
    ) -> Iterable[GitLabIssue]: ...

    def create_issue(
        self,
        project: str,
        title: str,
        description: str,
        *,
        labels: tuple[str, ...] = ...,
        assignee_ids: tuple[int, ...] = ...,
    ) -> GitLabIssue: ...

    def find_user(self, username: str) -> GitLabUser | None: ...

    def get_user(self, user_id: int) -> GitLabUser: ...


class ContactDirectory(Protocol):
    """Salesforce: the contact roles and products of the engagements' opportunities."""

    def opportunity_contacts(
        self, opportunity_ids: Sequence[str], extra_fields: Sequence[str] = ...
    ) -> list[OpportunityContacts]: ...


class SurveyRecords(Protocol):
    """The state store's record of surveys (``stores.csat.SurveyLedger``)."""

    def surveyed_between(self, after: str, before: str) -> set[str]: ...

    def opted_out(self) -> set[str]: ...

    def contacts_surveyed_for(self, engagement_url: str) -> set[str]: ...

    def add(self, survey: NewSurvey) -> str: ...

    def pending(self) -> list[SurveyMail]: ...

    def claim(self, survey_id: str) -> bool: ...

    def release(self, survey_id: str) -> bool: ...

    def mark_sent(self, survey_id: str) -> None: ...

    def reminders_due(self, window_before: str) -> list[SurveyMail]: ...

    def claim_reminder(self, survey_id: str) -> bool: ...

    def release_reminder(self, survey_id: str) -> bool: ...

    def mark_reminder_sent(self, survey_id: str) -> None: ...

    def interrupted_sends(self) -> list[str]: ...

    def low_scores_without_followup(self) -> list[LowScore]: ...

    def followup_creating(self, survey_id: str) -> None: ...

    def followup_created(self, survey_id: str, url: str) -> None: ...

    def audit(self, survey_id: str, action: str, detail: str) -> None: ...


if TYPE_CHECKING:  # mypy checks that the collaborators the DAG wires fit these ports (never run)
    from ps_integrations.hooks.gitlab import GitLabHook
    from ps_integrations.hooks.salesforce import SalesforceHook
    from ps_integrations.mail import send_message
    from ps_integrations.stores.csat import SurveyLedger

    def _wired(
        gitlab: GitLabHook, salesforce: SalesforceHook, ledger: SurveyLedger
    ) -> tuple[IssueTracker, ContactDirectory, SurveyRecords, SendMail]:
        return gitlab, salesforce, ledger, send_message
