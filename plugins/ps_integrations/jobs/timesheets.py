"""Timesheet roll-up inputs (issue #8, second step): timelogs through GitLab GraphQL and approval
issues through REST, turned into the domain's rounded entries and approvals.

The DAG, exports, locking and finance mail build on these next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ps_integrations.domain.timesheets import (
    ApprovalIssue,
    Entry,
    category_of,
    local_date,
    round_hours,
)

log = logging.getLogger(__name__)

TIMELOGS_QUERY = """
query($group: GroupID!, $start: Time!, $end: Time!, $after: String) {
  timelogs(groupId: $group, startDate: $start, endDate: $end, first: 100, after: $after, sort: SPENT_AT_ASC) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id spentAt timeSpent summary
      user { username }
      issue { iid webUrl state title projectId epic { title } }
      project { fullPath }
    }
  }
}
"""


@dataclass(frozen=True)
class TimelogFinding:
    timelog_id: str
    engineer: str
    problem: str


def fetch_timelogs(gitlab: Any, group_path: str, start: date, end: date) -> list[dict[str, Any]]:
    """Every timelog of the group logged on start..end (inclusive), one GraphQL page of 100 at a time.

    The range is widened by a day each side so business-time-zone dates near midnight are not lost;
    callers keep the entries whose local date falls in their period.
    """
    from datetime import timedelta

    group = gitlab.client.groups.get(group_path)
    variables = {
        "group": f"gid://gitlab/Group/{group.id}",
        "start": (start - timedelta(days=1)).isoformat(),
        "end": (end + timedelta(days=1)).isoformat(),
    }
    return list(gitlab.graphql_nodes(TIMELOGS_QUERY, variables, ["timelogs"]))


def to_entries(
    nodes: Iterable[dict[str, Any]],
    business_timezone: str,
    engagement_project: str,
    first_day: date,
    last_day: date,
    today: date,
) -> tuple[list[Entry], list[TimelogFinding]]:
    """Rounded entries whose business-local date is in [first_day, last_day], and what looks wrong."""
    entries, findings = [], []
    for node in nodes:
        timelog_id = str(node["id"]).rsplit("/", 1)[-1]
        engineer = str((node.get("user") or {}).get("username") or "")
        spent_at = datetime.fromisoformat(str(node["spentAt"]).replace("Z", "+00:00"))
        day = local_date(spent_at, business_timezone)
        if not first_day <= day <= last_day:
            continue
        issue = node.get("issue")
        if issue is None:
            findings.append(TimelogFinding(timelog_id, engineer, "timelog without an issue"))
            continue
        if day > today:
            findings.append(TimelogFinding(timelog_id, engineer, f"future-dated entry ({day.isoformat()})"))
        project = str((node.get("project") or {}).get("fullPath") or "")
        is_engagement = project == engagement_project
        category = category_of((issue.get("epic") or {}).get("title"), is_engagement)
        if is_engagement and issue.get("state") == "closed":
            findings.append(
                TimelogFinding(timelog_id, engineer, f"time on a closed engagement ({issue.get('webUrl')})")
            )
        entries.append(
            Entry(
                timelog_id, engineer, day, str(issue.get("webUrl") or ""), category, round_hours(int(node["timeSpent"]))
            )
        )
    return entries, findings


def fetch_approval_issues(gitlab: Any, project_path: str, period_prefix: str) -> list[ApprovalIssue]:
    """Approval issues of the time-tracking project (any state), as the domain reads them."""
    project = gitlab.client.projects.get(project_path, lazy=True)
    issues = []
    for issue in project.issues.list(state="all", per_page=100, iterator=True):
        labels = tuple(issue.labels)
        if not any(label.startswith(period_prefix) for label in labels) and not any(
            label in ("ManagerCertifiedTimesheet", "HeadOfPSApproved", "FinanceApproved") for label in labels
        ):
            continue
        assignees = tuple(str(assignee["username"]) for assignee in (issue.assignees or []))
        issues.append(ApprovalIssue(int(issue.iid), labels, assignees, issue.web_url))
    return issues
