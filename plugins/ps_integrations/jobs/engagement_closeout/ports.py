"""What the engagement close-out needs from the systems it connects, as Protocols: the DAG wires the
real hooks, the state store's ledger and the exports store; tests wire small in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Protocol

from ps_integrations.domain.engagement_closeout import Adjustment
from ps_integrations.exports import ExportFile
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabMember
from ps_integrations.stores.engagement_closeout import CloseoutRecord, ExportedEntry


class EngagementTracker(Protocol):
    """GitLab (``GitLabHook``)."""

    def list_issues(
        self, project: str, *, state: str = "all", updated_after: str | None = None, order_by: str = "created_at"
    ) -> Iterator[GitLabIssue]: ...

    def get_issue(self, project: str, iid: int) -> GitLabIssue: ...

    def update_issue(
        self, project: str, iid: int, *, add_labels: tuple[str, ...] = (), remove_labels: tuple[str, ...] = ()
    ) -> GitLabIssue: ...

    def group_members_with_titles(self, group: str) -> list[GitLabMember]: ...


class OpportunityFiles(Protocol):
    """Salesforce: opportunities, users, files and Chatter (``SalesforceHook``)."""

    def query_records(self, soql: str) -> Iterator[dict[str, Any]]: ...

    def find_users(self, identifiers: list[str]) -> dict[str, dict[str, Any]]: ...

    def content_versions(
        self, document_id: str | None = None, location_id: str | None = None
    ) -> list[dict[str, Any]]: ...

    def create_content_version(
        self,
        title: str,
        path_on_client: str,
        data: bytes,
        *,
        first_publish_location_id: str | None = None,
        content_document_id: str | None = None,
        description: str | None = None,
        reason_for_change: str | None = None,
    ) -> str: ...

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any]: ...

    def record_feed(self, record_id: str) -> Iterator[dict[str, Any]]: ...

    def post_feed_item(self, subject_id: str, segments: list[dict[str, str]]) -> dict[str, Any]: ...


class CloseoutStore(Protocol):
    """The close-out's state (``stores.engagement_closeout.CloseoutLedger``)."""

    def closeout_of(self, engagement_url: str, closed_at: str) -> CloseoutRecord | None: ...

    def previous_filed(self, engagement_url: str, closed_at: str) -> CloseoutRecord | None: ...

    def unfinished(self) -> list[CloseoutRecord]: ...

    def save(self, record: CloseoutRecord) -> None: ...

    def set_status(self, engagement_url: str, closed_at: str, status: str, reason: str) -> None: ...

    def approved_entries(self, engagement_url: str) -> list[ExportedEntry]: ...

    def approved_totals(self) -> dict[str, Decimal]: ...

    def adjustments(self, engagement_url: str | None = None) -> list[Adjustment]: ...

    def audit(self, record_id: str, action: str, detail: str) -> None: ...


class ExportFolders(Protocol):
    """The exports store (``ExportStore``)."""

    def write_folder(self, folder: str, title: str, files: Sequence[ExportFile]) -> list[str]: ...
