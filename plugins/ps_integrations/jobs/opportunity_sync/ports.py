"""What the opportunity sync needs from the systems it connects, as Protocols: the DAG wires the real
hooks and the state store's ledger; tests wire small in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ps_integrations.domain.opportunity_plan import SyncState
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabNote, GitLabUser
from ps_integrations.hooks.salesforce import ApiUsage
from ps_integrations.stores.opportunity_sync import PendingNote, PendingWriteback


class OpportunitySource(Protocol):
    """Salesforce, as the sync reads and writes it (``SalesforceHook``)."""

    def describe_fields(self, sobject: str) -> set[str]: ...

    def query_records(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]: ...

    def update_records(self, sobject: str, updates: dict[str, dict[str, Any]]) -> dict[str, str | None]: ...

    def record_url_base(self) -> str: ...

    @property
    def api_usage(self) -> ApiUsage | None: ...


class IssueTracker(Protocol):
    """GitLab, as the sync writes it (``GitLabHook``; paced inside)."""

    requests_made: int

    def pace(self, requests_per_minute: float | None, notes_per_minute: float | None = None) -> object: ...

    def list_issues(
        self, project: str, *, state: str = "all", order_by: str = "created_at", sort: str = "asc"
    ) -> Iterator[GitLabIssue]: ...

    def get_issue(self, project: str, iid: int) -> GitLabIssue: ...

    def create_issue(
        self,
        project: str,
        title: str,
        description: str,
        *,
        labels: tuple[str, ...] = (),
        assignee_ids: tuple[int, ...] = (),
        due_date: str | None = None,
    ) -> GitLabIssue: ...

    def update_issue(
        self,
        project: str,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
        add_labels: tuple[str, ...] = (),
        remove_labels: tuple[str, ...] = (),
        due_date: str | None = None,
    ) -> GitLabIssue: ...

    def list_notes(self, project: str, iid: int, *, newest_first: bool = True) -> Iterator[GitLabNote]: ...

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote: ...

    def find_user(self, username: str) -> GitLabUser | None: ...


class SyncLedger(Protocol):
    """The sync's state (``stores.opportunity_sync.OpportunityLedger``)."""

    def states(self) -> dict[str, SyncState]: ...

    def save(self, states: Sequence[SyncState]) -> None: ...

    def record_write(self, state: SyncState, confirmed: PendingNote | None, owed: PendingWriteback | None) -> None: ...

    def read_in_window(self, start_key: str, end_key: str) -> list[str]: ...

    def record_reads(self, stamps: Sequence[tuple[str, str]]) -> None: ...

    def pending_notes(self) -> list[PendingNote]: ...

    def pending_writebacks(self) -> list[PendingWriteback]: ...

    def add_pending_notes(self, notes: Sequence[PendingNote]) -> None: ...

    def owe_writebacks(self, writebacks: Sequence[PendingWriteback]) -> None: ...

    def drop_note(self, note: PendingNote) -> None: ...

    def writeback_done(self, writeback: PendingWriteback) -> None: ...

    def writeback_failed(self, writeback: PendingWriteback, error: str) -> None: ...

    def set_quarantine(self, opportunity_id: str, project: str, quarantined: bool, reason: str | None) -> None: ...

    def audit(self, record_id: str, action: str, detail: str) -> None: ...
