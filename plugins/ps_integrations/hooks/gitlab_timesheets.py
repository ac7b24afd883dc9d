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


def timelog_records(nodes: Iterable[dict[str, Any]]) -> Iterator[GitLabTimelog]:
    """GraphQL timelog nodes as records, in one tight loop (a year of a large team is a million
    nodes): GraphQL's types are trusted (``ID`` strings, ``Int`` numbers), each issue's global id is
    parsed once."""
    make = GitLabTimelog._make
    issue_ids: dict[str, int] = {}
    for node in nodes:
        user = node.get("user")
        project = node.get("project")
        issue = node.get("issue")
        if issue is None:
            issue_id, url, state, labels, epic_title = None, "", "", (), None
        else:
            gid = issue.get("id")
            issue_id = issue_ids.get(gid) if gid else 0
            if issue_id is None:
                issue_id = issue_ids[gid] = int(_number(gid))
            url, state = issue.get("webUrl") or "", issue.get("state") or ""
            label_nodes = (issue.get("labels") or {}).get("nodes")
            labels = tuple([label["title"] for label in label_nodes if label]) if label_nodes else ()
            epic = issue.get("epic")
            epic_title = epic["title"] if epic else None
        yield make(
            (
                _number(node["id"]),
                node["spentAt"],
                node["timeSpent"],
                (user.get("username") or "") if user else "",
                issue_id,
                url,
                state,
                (project.get("fullPath") or "") if project else "",
                labels,
                epic_title,
            )
        )


def timelog_record(node: dict[str, Any]) -> GitLabTimelog:
    """One GraphQL timelog node as a record."""
    return next(timelog_records([node]))
