"""What the SKU reconciliation needs from other systems, named by what it asks of them.

The DAG wires the real hooks and stores (``ZuoraHook``, ``GitLabHook``, ``ReconciliationLedger``,
``ExportStore``); ``tests/jobs/test_sku_reconciliation.py`` wires small in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from ps_integrations.domain.sku_reconciliation import ProblemKey
from ps_integrations.exports import ExportFile
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabNote, RepositoryFile
from ps_integrations.stores.sent_mail import MailState
from ps_integrations.stores.sku_reconciliation import ReconciliationRun

if TYPE_CHECKING:
    from ps_integrations.exports import ExportStore
    from ps_integrations.hooks.gitlab import GitLabHook
    from ps_integrations.hooks.zuora import ZuoraHook
    from ps_integrations.stores.sku_reconciliation import ReconciliationLedger


class ZuoraCatalog(Protocol):
    """Zuora's SOAP API: ZOQL queries, paged inside (``ZuoraHook``)."""

    @property
    def endpoint(self) -> str: ...

    def query(self, zoql: str, batch_size: int | None = None) -> Iterator[dict[str, Any]]: ...


class RepositoryFiles(Protocol):
    """A file of a GitLab repository at a ref (``GitLabHook.get_file``)."""

    def get_file(self, project: str, path: str, ref: str) -> RepositoryFile: ...


class IssueTracker(Protocol):
    """The finance project's issues (``GitLabHook``)."""

    def list_issues(
        self, project: str, *, state: str = "all", labels: tuple[str, ...] = (), order_by: str = "created_at"
    ) -> Iterator[GitLabIssue]: ...

    def get_issue(self, project: str, iid: int) -> GitLabIssue: ...

    def create_issue(
        self, project: str, title: str, description: str, *, labels: tuple[str, ...] = ()
    ) -> GitLabIssue: ...

    def update_issue(
        self,
        project: str,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
        state_event: str | None = None,
    ) -> GitLabIssue: ...

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote: ...


class GitLab(RepositoryFiles, IssueTracker, Protocol):
    """Both: services.yml lives in GitLab and so does the finance issue."""


class SentMail(Protocol):
    """At most one mail per version (``SentMailLedger``)."""

    def send_once(self, key: str, version: str, send: Callable[[], None]) -> MailState: ...


class ReconciliationRecords(Protocol):
    """What the job keeps between runs (``stores.sku_reconciliation.ReconciliationLedger``)."""

    @property
    def mail(self) -> SentMail: ...

    def previous_problems(self, as_of: date) -> frozenset[ProblemKey] | None: ...

    def record_run(self, run: ReconciliationRun, problems: Iterable[ProblemKey]) -> None: ...

    def finance_issue_iid(self) -> int | None: ...

    def remember_finance_issue(self, iid: int) -> None: ...


class ExportFolders(Protocol):
    """The exports store (``ExportStore``)."""

    def write_folder(self, folder: str, title: str, files: Sequence[ExportFile]) -> list[str]: ...


Send = Callable[[EmailMessage], None]


if TYPE_CHECKING:  # mypy checks that the real collaborators the DAG wires fit these Protocols

    def _wired(
        zuora: ZuoraHook, gitlab: GitLabHook, records: ReconciliationLedger, exports: ExportStore
    ) -> tuple[ZuoraCatalog, GitLab, ReconciliationRecords, ExportFolders]:
        return zuora, gitlab, records, exports
