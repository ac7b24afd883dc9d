"""What the timesheet roll-up needs from other systems, named by what it asks (issue #16). The DAG
wires the real hooks and stores; tests/jobs/test_timesheets.py wires small in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from ps_integrations.exports import ExportFile
from ps_integrations.hooks.gitlab import GitLabEpic, GitLabIssue, GitLabMember, GitLabNote, TimelogListing
from ps_integrations.hooks.salesforce import OpportunityBudget
from ps_integrations.stores.sent_mail import MailState


class TimeTracking(Protocol):
    """GitLab: timelogs over GraphQL, the group's people, the time-tracking and engagement issues."""

    def group_gid(self, group: str) -> str: ...

    def type_fields(self, type_name: str) -> frozenset[str]: ...

    def list_timelogs(self, group_gid: str, start: str, end: str, *, with_epic: bool = False) -> TimelogListing: ...

    def timelog_figures(self, group_gid: str, ranges: list[tuple[str, str]]) -> list[tuple[int, int]]: ...

    def work_item_parents(self, issue_ids: Sequence[int]) -> dict[int, str]: ...

    def group_members_with_titles(self, group: str) -> list[GitLabMember]: ...

    def list_issues(
        self,
        project: str,
        *,
        state: str = "all",
        labels: tuple[str, ...] = (),
        updated_after: str | None = None,
        order_by: str = "created_at",
        sort: str = "asc",
        iids: tuple[int, ...] = (),
    ) -> Iterator[GitLabIssue]: ...


class CertificationTracker(Protocol):
    """GitLab: the certification issues the roll-up opens and keeps current."""

    def create_issue(
        self,
        project: str,
        title: str,
        description: str,
        *,
        labels: tuple[str, ...] = (),
        assignee_ids: tuple[int, ...] = (),
        due_date: str | None = None,
        confidential: bool = False,
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
        assignee_ids: tuple[int, ...] | None = None,
        state_event: str | None = None,
    ) -> GitLabIssue: ...

    def list_notes(self, project: str, iid: int, *, newest_first: bool = True) -> Iterator[GitLabNote]: ...

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote: ...

    def upload_file(self, project: str, filename: str, content: bytes) -> str: ...

    def find_epic(self, group: str, title: str) -> GitLabEpic | None: ...

    def epic_issue_ids(self, group: str, epic_iid: int) -> set[int]: ...

    def add_issue_to_epic(self, group: str, epic_iid: int, issue_id: int) -> None: ...


class TimesheetGitLab(TimeTracking, CertificationTracker, Protocol):
    """Everything the roll-up asks GitLab."""


class BudgetSource(Protocol):
    """Salesforce: the engagements' budgets."""

    def opportunity_budgets(self, opportunity_ids: list[str], budget_field: str) -> list[OpportunityBudget]: ...


class ExportWriter(Protocol):
    def write_folder(self, folder: str, title: str, files: Sequence[ExportFile]) -> list[str]: ...


class MailOnce(Protocol):
    """``SentMailLedger``: at most one mail per version, also across a kill during the send."""

    def state(self, key: str, version: str) -> MailState | None: ...

    def send_once(self, key: str, version: str, send: Callable[[], None]) -> MailState: ...

    def interrupted(self, prefix: str = "") -> list[str]: ...


class MailSender(Protocol):
    def __call__(self, to: str, subject: str, html: str) -> None: ...
