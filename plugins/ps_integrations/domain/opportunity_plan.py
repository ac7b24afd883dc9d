"""Opportunity sync, the plan: what the sync recorded about each opportunity (``SyncState``) and what
to do for it now (``Action``s). Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ps_integrations.domain.opportunity_sync import Change, IssueContent, Opportunity, diff, snapshot


@dataclass(frozen=True)
class SyncState:
    """What the sync recorded about one opportunity and its issue (the state store's record)."""

    opportunity_id: str
    project: str
    status: str  # creating (the issue may exist: look it up by marker) | synced | flagged | failed
    issue_iid: int | None = None
    issue_url: str | None = None
    flagged: bool = False
    content_hash: str | None = None  # of the issue content last written
    snapshot: Mapping[str, Any] | None = None  # the synced fields as last noted
    labels: tuple[str, ...] | None = None  # the labels the sync set
    title: str | None = None
    due_date: str | None = None
    last_modstamp: str | None = None
    failure_reason: str | None = None
    failure_count: int = 0
    quarantined: bool = False
    quarantine_reason: str | None = None
    last_run_id: str | None = None
    updated_at: str | None = None


@dataclass
class Action:
    """One thing to do (or not) for one opportunity."""

    kind: str  # create, update, flag, unflag, note, unchanged, skipped, quarantined
    opportunity: Opportunity
    content: IssueContent | None = None
    issue_iid: int | None = None
    changes: list[Change] = field(default_factory=list)
    reason: str = ""


def plan(
    opportunities: list[Opportunity],
    state: Mapping[str, SyncState],
    marker_index: Mapping[str, int],
    contents: Mapping[str, IssueContent],
    quarantined: set[str],
) -> list[Action]:
    """Decide per opportunity. ``state``: opportunity id -> what the sync recorded; ``marker_index``:
    opportunity id -> issue iid found by marker (for opportunities the state store lost)."""
    actions = []
    for opportunity in opportunities:
        recorded = state.get(opportunity.id)
        iid = (recorded.issue_iid if recorded else None) or marker_index.get(opportunity.id)
        if opportunity.id in quarantined:
            reason = str((recorded.quarantine_reason if recorded else None) or "")
            actions.append(Action("quarantined", opportunity, issue_iid=iid, reason=reason))
            continue
        flagged = bool(recorded and recorded.flagged)
        old_snapshot = recorded.snapshot if recorded else None
        if opportunity.won:
            content = contents[opportunity.id]
            if iid is None:
                actions.append(Action("create", opportunity, content))
                continue
            changes = diff(old_snapshot, snapshot(opportunity))
            if flagged:
                actions.append(Action("unflag", opportunity, content, iid, changes))
            elif (recorded.content_hash if recorded else None) != content.content_hash():
                actions.append(Action("update", opportunity, content, iid, changes))
            else:
                actions.append(Action("unchanged", opportunity, content, iid))
        elif iid is not None:
            changes = diff(old_snapshot, snapshot(opportunity))
            if not flagged:
                actions.append(Action("flag", opportunity, None, iid, changes))
            elif changes:
                # Still not won, but something changed: say so now, not silently at the re-win.
                actions.append(Action("note", opportunity, None, iid, changes))
            else:
                actions.append(Action("unchanged", opportunity, None, iid))
        else:
            actions.append(Action("skipped", opportunity, reason="not won and never synced"))
    return actions
