"""Engagements as GitLab issues, shared by the jobs that follow them (close-out, CSAT surveys): which
issues are engagements and which of them closed within a window. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

# The engagement-type labels the opportunity sync sets (include/ps_opportunity_sync/engagement_types.yml);
# other issues of the project (CSAT follow-ups, say) are not engagements.
ENGAGEMENT_TYPES = (
    "Implementation",
    "Migration",
    "Training",
    "Embedded Engineer",
    "Consulting",
    "Health Check",
    "Integration",
    "Custom SOW",
)


class ClosableIssue(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def closed_at(self) -> str | None: ...

    @property
    def labels(self) -> tuple[str, ...]: ...


IssueT = TypeVar("IssueT", bound=ClosableIssue)


def is_engagement(labels: Iterable[str], engagement_types: Collection[str] = ENGAGEMENT_TYPES) -> bool:
    """Whether an issue with these labels is an engagement (carries an engagement-type label)."""
    return any(label in engagement_types for label in labels)


def moment(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp from GitLab (``2026-11-20T09:00:00.000Z``) as an aware UTC moment."""
    if not text:
        return None
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def closed_within(
    issues: Iterable[IssueT], start: datetime, end: datetime, engagement_types: Collection[str] | None = None
) -> list[IssueT]:
    """The issues closed in [start, end), in the order given; only engagements when types are given.

    Feed it the project's closed issues updated after ``start`` (GitLab's ``updated_after``): closing
    an issue updates it, so none closed in the window is missed.
    """
    found = []
    for issue in issues:
        if engagement_types is not None and not is_engagement(issue.labels, engagement_types):
            continue
        closed = moment(issue.closed_at) if issue.state == "closed" else None
        if closed is not None and start <= closed < end:
            found.append(issue)
    return found
