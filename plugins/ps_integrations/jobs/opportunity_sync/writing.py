"""The opportunity sync's GitLab side: the marker index, the writes of one action, and whether a
note is already on its issue. Every call goes through the hook, which paces it."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from ps_integrations.domain.opportunity_plan import Action, SyncState
from ps_integrations.domain.opportunity_sync import (
    SyncConfig,
    change_id,
    change_ids,
    change_note,
    compose_description,
    find_marker,
    flag_note,
    is_sync_label,
    label_collisions,
    snapshot,
    unflag_note,
    with_change_id,
)
from ps_integrations.exceptions import GitLabApiError, IntegrationError
from ps_integrations.jobs.opportunity_sync.ports import IssueTracker
from ps_integrations.run_summary import RunSummary
from ps_integrations.stores.opportunity_sync import PendingNote

log = logging.getLogger(__name__)
T = TypeVar("T")

# GitLab's own errors and a proxy's "upstream failed": the write may or may not have been made, and
# is checked for before it is made again. A 504 or a timeout is left to the next run: the request
# may still be running in GitLab.
NOT_WRITTEN_MAYBE = frozenset({500, 502, 503})
CREATE_ATTEMPTS = 3
NEWEST_CHECKED = 100  # one listing page of the project's newest issues


class LabelCollision(IntegrationError):
    """Adding a sync label would remove a label the sync did not set (scoped labels are exclusive)."""


@dataclass(frozen=True)
class PlannedNote:
    """A note a write will post, known before any GitLab call so it can be recorded as pending first."""

    pending: PendingNote
    body: str


@dataclass(frozen=True)
class WrittenIssue:
    iid: int
    web_url: str


def planned_note(action: Action, previous: SyncState | None, reopened_label: str) -> PlannedNote | None:
    """The note an action posts (a flag, an unflag, what changed), with its change id, or None."""
    opportunity = action.opportunity
    parts = []
    if action.kind == "flag":
        parts.append(flag_note(opportunity, reopened_label))
    elif action.kind == "unflag":
        parts.append(unflag_note(reopened_label))
    if action.changes:
        parts.append(change_note(action.changes, opportunity.modstamp))
    if not parts or action.issue_iid is None:
        return None
    old = dict(previous.snapshot) if previous and previous.snapshot is not None else None
    new = snapshot(opportunity)
    identifier = change_id(opportunity.id, action.kind, old, new)
    pending = PendingNote(opportunity.id, identifier, action.issue_iid, new, action.kind in ("flag", "note"))
    return PlannedNote(pending, with_change_id("\n\n".join(parts), identifier))


class IssueWriter:
    """Applies one planned action to its issue in the sync's project."""

    def __init__(
        self, gitlab: IssueTracker, config: SyncConfig, previous: Mapping[str, SyncState], summary: RunSummary
    ) -> None:
        self.gitlab = gitlab
        self.config = config
        self.project = config.project
        self.previous = previous  # the states as the run found them
        self.summary = summary
        self.pause: Callable[[float], None] = time.sleep  # between a failed write and its check

    def marker_index(self) -> tuple[dict[str, int], int]:
        """Opportunity id -> issue iid from the markers in the project's issues, and the pages listed.

        A plain listing (no ``search``: GitLab limits searches separately, 30 per minute by default, and
        a search listing of a few thousand synced issues would meet its 429). Costs ceil(issues / 100)
        requests under the global limit.
        """
        before = self.gitlab.requests_made
        index: dict[str, int] = {}
        for issue in self.gitlab.list_issues(self.project, state="all", order_by="created_at", sort="asc"):
            opportunity_id = find_marker(issue.description)
            if opportunity_id:
                index.setdefault(opportunity_id, issue.iid)
        pages = self.gitlab.requests_made - before
        log.info("Marker index: %d synced issues in %s (%d pages)", len(index), self.project, pages)
        return index, pages

    @cached_property
    def coordinator_id(self) -> int | None:
        if not self.config.coordinator:
            return None
        user = self.gitlab.find_user(self.config.coordinator)
        if user is None:
            self.summary.note(
                f"WARNING coordinator {self.config.coordinator!r} not found in GitLab; issues left unassigned"
            )
            return None
        return user.id

    def note_posted(self, iid: int, identifier: str) -> bool:
        """Whether the issue has a note carrying the change id (newest first, page by page)."""
        return any(identifier in change_ids(note.body) for note in self.gitlab.list_notes(self.project, iid))

    def write(self, action: Action, note: PlannedNote | None) -> WrittenIssue:
        """The GitLab calls for one action."""
        if action.kind == "create":
            return self._create(action)
        iid = action.issue_iid
        assert iid is not None
        current = self.gitlab.get_issue(self.project, iid)
        if action.kind in ("flag", "note"):
            label = self.config.reopened_label
            if action.kind == "flag" and label not in current.labels:
                self._check_labels(action.opportunity.id, iid, current.labels, [label])
                self.gitlab.update_issue(self.project, iid, add_labels=(label,))
        else:
            self._update(action, iid, current.description, current.labels)
        if note is not None:
            self._post_note(iid, note)
        return WrittenIssue(iid, current.web_url)

    def _post_note(self, iid: int, note: PlannedNote) -> None:
        """The note, posted once (see ``_write_once``): the issue is checked for its change id."""
        self._write_once(
            lambda: self.gitlab.create_note(self.project, iid, note.body),
            lambda: True if self.note_posted(iid, note.pending.change_id) else None,
        )

    def _create(self, action: Action) -> WrittenIssue:
        """The issue, created once (see ``_write_once``): the newest issues are checked for the marker."""
        content = action.content
        assert content is not None

        def create() -> WrittenIssue:
            issue = self.gitlab.create_issue(
                self.project,
                content.title,
                compose_description(None, content, action.opportunity.id),
                labels=tuple(content.labels),
                assignee_ids=() if self.coordinator_id is None else (self.coordinator_id,),
                due_date=content.due_date or None,
            )
            return WrittenIssue(issue.iid, issue.web_url)

        return self._write_once(create, lambda: self._newest_with_marker(action.opportunity.id))

    def _write_once(self, write: Callable[[], T], written: Callable[[], T | None]) -> T:
        """One GitLab write, made once. The hook never re-sends a POST (a proxy's 5xx can follow a write
        GitLab made); after a 500/502/503 ``written`` looks for it and it is made again only when it is
        not there. A timeout or a 504 - the request may still be running - is raised: the pending record
        leads the next run to it."""
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                return write()
            except GitLabApiError as error:
                if error.status not in NOT_WRITTEN_MAYBE or attempt == CREATE_ATTEMPTS:
                    raise
                log.warning("GitLab %s on %s: checking it was not made", error.status, error.endpoint)
                self.pause(float(attempt))
                found = written()
                if found is not None:
                    return found
        raise AssertionError("unreachable")

    def _newest_with_marker(self, opportunity_id: str) -> WrittenIssue | None:
        """The issue carrying the opportunity's marker among the project's newest (one listing page)."""
        newest = self.gitlab.list_issues(self.project, order_by="created_at", sort="desc")
        for issue in itertools.islice(newest, NEWEST_CHECKED):
            if find_marker(issue.description) == opportunity_id:
                return WrittenIssue(issue.iid, issue.web_url)
        return None

    def _update(self, action: Action, iid: int, description: str, labels: tuple[str, ...]) -> None:
        """The managed block, the sync's labels, title and due date: only what changed."""
        opportunity, content = action.opportunity, action.content
        assert content is not None
        previous = self.previous.get(opportunity.id)
        base = set(self.config.base_labels)
        old_labels = set((previous.labels if previous else None) or ()) - base
        new_labels = set(content.labels) - base
        add = sorted(label for label in new_labels - old_labels if label not in labels)
        remove = sorted(old_labels - new_labels)
        if action.kind == "unflag":
            remove.append(self.config.reopened_label)
        self._check_labels(opportunity.id, iid, labels, add)
        new_description = compose_description(description, content, opportunity.id)
        title = content.title if content.title != (previous.title if previous else None) else None
        due = content.due_date or None
        if due is not None and due == (previous.due_date if previous else None):
            due = None
        if new_description != description or add or remove or title is not None or due is not None:
            self.gitlab.update_issue(
                self.project,
                iid,
                description=new_description,
                add_labels=tuple(add),
                remove_labels=tuple(remove),
                title=title,
                due_date=due,
            )

    def _check_labels(self, opportunity_id: str, iid: int, current: tuple[str, ...], adding: list[str]) -> None:
        previous = self.previous.get(opportunity_id)
        ours = set((previous.labels if previous else None) or ()) - set(self.config.base_labels)
        ours |= {label for label in current if is_sync_label(label, self.config)}
        collisions = label_collisions(list(current), adding, ours)
        if collisions:
            listed = "; ".join(f"adding {new!r} would remove {old!r}" for new, old in collisions)
            raise LabelCollision(
                f"issue #{iid}: {listed}, a label the sync did not set (GitLab scoped labels are exclusive); "
                "nothing was changed. Remove that label or give the sync label a scope of its own"
            )
