"""What the GitLab hook's timesheet methods return (issue #16): records of timelogs, members and epics,
and the GraphQL timelog query they come from. No python-gitlab here; ``hooks/gitlab.py`` re-exports."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ps_integrations.hooks.gitlab import GitLabUser


WORK_ITEMS_PER_QUERY = 50  # aliased workItem fields per GraphQL request
TIMELOG_FIGURES_PER_QUERY = 20  # aliases per GraphQL request, well inside GitLab's query complexity limit
TIMELOGS_QUERY_TEMPLATE = """
query($group: GroupID!, $start: Time!, $end: Time!, $after: String) {
  timelogs(groupId: $group, startDate: $start, endDate: $end, first: 100, after: $after, sort: SPENT_AT_ASC) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id spentAt timeSpent
      user { username }
      issue { id webUrl state labels(first: 20) { nodes { title } } %(epic)s }
      project { fullPath }
    }
  }
}
"""


class GitLabTimelog(NamedTuple):
    """One timelog (a named tuple: a year of a large team has a million of them)."""

    id: str  # the number of gid://gitlab/Timelog/N
    spent_at: str  # ISO 8601 as GitLab sent it
    seconds: int
    username: str
    issue_id: int | None  # global id; None: a timelog on a merge request or a deleted issue
    issue_url: str
    issue_state: str
    project: str  # full path
    labels: tuple[str, ...]
    epic_title: str | None  # only when asked for (``with_epic``)


class TimelogListing(NamedTuple):
    timelogs: list[GitLabTimelog]
    pages: int  # GraphQL requests made
    duplicates: int  # timelogs seen on two pages, counted once


@dataclass(frozen=True)
class GitLabMember:
    user: GitLabUser
    job_title: str


@dataclass(frozen=True)
class GitLabEpic:
    id: int
    iid: int
    title: str


def _number(gid: Any) -> str:
    return str(gid).rpartition("/")[2]


IssueFields = tuple[int | None, str, str, tuple[str, ...], str | None]  # id, URL, state, labels, epic title
NO_ISSUE: IssueFields = (None, "", "", (), None)


def _issue_fields(issue: dict[str, Any]) -> IssueFields:
    labels = issue.get("labels")
    epic = issue.get("epic")
    return (
        int(_number(issue["id"])) if issue.get("id") else 0,
        str(issue.get("webUrl") or ""),
        str(issue.get("state") or ""),
        tuple(str(label["title"]) for label in labels.get("nodes") or () if label) if labels else (),
        str(epic["title"]) if epic else None,
    )


def timelog_records(nodes: Iterable[dict[str, Any]]) -> Iterator[GitLabTimelog]:
    """GraphQL timelog nodes as records. A listing repeats few issues (a million timelogs, a few hundred
    issues): each issue's fields are read from its first node and shared, so one listing sees one
    snapshot of an issue's labels and epic."""
    make = GitLabTimelog._make
    issues: dict[tuple[Any, Any, Any], IssueFields] = {}
    for node in nodes:
        issue = node.get("issue")
        if issue is None:
            fields = NO_ISSUE
        else:
            key = (issue.get("id"), issue.get("webUrl"), issue.get("state"))
            fields = issues.get(key)  # type: ignore[assignment]
            if fields is None:
                fields = issues[key] = _issue_fields(issue)
        user = node.get("user")
        project = node.get("project")
        yield make(
            (
                _number(node["id"]),
                str(node["spentAt"]),
                int(node["timeSpent"]),
                str(user.get("username") or "") if user else "",
                fields[0],
                fields[1],
                fields[2],
                str(project.get("fullPath") or "") if project else "",
                fields[3],
                fields[4],
            )
        )


def timelog_record(node: dict[str, Any]) -> GitLabTimelog:
    """One GraphQL timelog node as a record."""
    return next(timelog_records([node]))
