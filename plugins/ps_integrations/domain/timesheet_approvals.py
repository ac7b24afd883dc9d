"""Timesheet approvals (issue #8): the labels on an engineer's time-tracking issue that approve a
period, level by level, and which periods are released. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ps_integrations.domain.timesheets import period_key_problem


@dataclass(frozen=True)
class ApprovalLabels:
    """Label names, lowest level first: manager, Head of PS, finance."""

    period_prefix: str = "timesheet::"
    levels: tuple[str, ...] = ("ManagerCertifiedTimesheet", "HeadOfPSApproved", "FinanceApproved")


@dataclass(frozen=True)
class ApprovalIssue:
    iid: int
    labels: tuple[str, ...]
    assignees: tuple[str, ...]
    url: str = ""
    certified_engineer: str | None = None  # a certification issue the job opened names its engineer in a marker
    author: str = ""
    issue_id: int = 0
    description: str = ""
    state: str = "opened"
    in_epic: bool = False


@dataclass(frozen=True)
class Approval:
    engineer: str | None
    period: str | None
    level: int  # 0 = none, 1 = manager, 2 = Head of PS, 3 = finance
    trusted: bool
    problem: str = ""
    issue_iid: int | None = None


def read_approval(
    issue: ApprovalIssue, labels: ApprovalLabels, engineers: set[str], period_length: str | None = None
) -> Approval:
    """What an approval issue says, and whether it can be trusted.

    Untrusted: no period label (or several), a period label that is no period of ``period_length``
    (when given), no engineer (or several), an engineer who is not a PS engineer, or approval labels
    out of order (a higher level without every lower one).
    """
    periods = [label[len(labels.period_prefix) :] for label in issue.labels if label.startswith(labels.period_prefix)]
    present = [level in issue.labels for level in labels.levels]
    level = sum(present)
    problems = []
    if len(periods) != 1:
        problems.append("no period label" if not periods else f"several period labels: {', '.join(periods)}")
    elif period_length is not None and (wrong := period_key_problem(periods[0], period_length)):
        problems.append(f"label {labels.period_prefix}{periods[0]}: {wrong}")
    if issue.certified_engineer is not None:
        # the job's certification issue: assigned to the manager, the engineer is in its marker
        if issue.certified_engineer not in engineers:
            problems.append(f"{issue.certified_engineer} is not a PS engineer")
    elif len(issue.assignees) != 1:
        problems.append("no engineer assigned" if not issue.assignees else "several engineers assigned")
    elif issue.assignees[0] not in engineers:
        problems.append(f"{issue.assignees[0]} is not a PS engineer")
    if present != sorted(present, reverse=True):
        missing = [name for name, here in zip(labels.levels, present, strict=True) if not here]
        problems.append(f"approval labels out of order: missing {missing[0]} below a higher level")
    engineer = issue.assignees[0] if len(issue.assignees) == 1 else None
    if issue.certified_engineer is not None:
        engineer = issue.certified_engineer
    return Approval(
        engineer, periods[0] if len(periods) == 1 else None, level, not problems, "; ".join(problems), issue.iid
    )


def approved_periods(approvals: Iterable[Approval], release_level: int) -> dict[tuple[str, str], Approval]:
    """(engineer, period) -> the trusted approval that reached the release level."""
    released: dict[tuple[str, str], Approval] = {}
    for approval in approvals:
        if approval.trusted and approval.level >= release_level and approval.engineer and approval.period:
            released[(approval.engineer, approval.period)] = approval
    return released
