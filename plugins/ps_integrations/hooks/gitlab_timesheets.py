"""What the GitLab hook's timesheet methods return (issue #16): records of timelogs, members and epics,
and the GraphQL timelog query they come from, and the operations themselves
(``TimesheetOperations``, a mixin of ``GitLabHook``). No python-gitlab here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from urllib3 import encode_multipart_formdata

from ps_integrations.exceptions import GitLabNotFoundError
from ps_integrations.hooks.gitlab_records import GitLabUser, user_from
from ps_integrations.hooks.gitlab_transport import WRITE_ONCE, GitLabTransport

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
    spent_at: str  # ISO 8601 as GitLab sent it; "" when GitLab has none (``spentAt`` is nullable)
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
                node["spentAt"] or "",
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


class TimesheetOperations:
    """The roll-up's GitLab operations (issue #16): timelogs over GraphQL, members, epics, work items."""

    def group_gid(self: GitLabTransport, group: str) -> str:
        """``GET /groups/:id``: the group's GraphQL global id (``gid://gitlab/Group/N``)."""
        raw = self._call(f"GET /groups/{group}", lambda: self.client.groups.get(group))
        return f"gid://gitlab/Group/{int(raw.id)}"

    def type_fields(self: GitLabTransport, type_name: str) -> frozenset[str]:
        """GraphQL introspection of one type's field names (empty: the instance has no such type).
        Works on every edition, so it tells what an instance offers before a query asks for it."""
        data = self.graphql_query(
            "query($name: String!) { __type(name: $name) { fields { name } } }", {"name": type_name}
        )
        return frozenset(str(item["name"]) for item in ((data.get("__type") or {}).get("fields") or []))

    def list_timelogs(
        self: GitLabTransport, group_gid: str, start: str, end: str, *, with_epic: bool = False
    ) -> TimelogListing:
        """Every timelog of a group dated ``start``..``end`` (dates, the server's days), 100 a page by
        ``SPENT_AT_ASC``, de-duplicated by id (how GitLab breaks ties between equal ``spentAt`` across
        pages is not documented: a timelog seen twice counts once, the later copy wins).

        :param with_epic: also ask for ``Issue.epic`` (only where the instance has it: Free/CE refuses
            the whole query otherwise).
        :return: the timelogs, the GraphQL pages read and the duplicates dropped.
        """
        query = TIMELOGS_QUERY_TEMPLATE % {"epic": "epic { title }" if with_epic else ""}
        variables = {"group": group_gid, "start": start, "end": end}
        requests_before = self.requests_made
        by_id: dict[str, GitLabTimelog] = {}
        seen = 0
        for timelog in timelog_records(self.graphql_nodes(query, variables, ["timelogs"])):
            seen += 1
            by_id[timelog.id] = timelog
        return TimelogListing(list(by_id.values()), self.requests_made - requests_before, seen - len(by_id))

    def timelog_figures(self: GitLabTransport, group_gid: str, ranges: list[tuple[str, str]]) -> list[tuple[int, int]]:
        """GitLab's timelog ``count`` and ``totalSpentTime`` (seconds) of each date range, without the
        nodes: ``TIMELOG_FIGURES_PER_QUERY`` aliased ranges a request.

        :return: (count, seconds) per range, in the order given.
        """
        figures: list[tuple[int, int]] = []
        for offset in range(0, len(ranges), TIMELOG_FIGURES_PER_QUERY):
            batch = ranges[offset : offset + TIMELOG_FIGURES_PER_QUERY]
            variables: dict[str, Any] = {"group": group_gid}
            declarations, fields = ["$group: GroupID!"], []
            for index, (start, end) in enumerate(batch):
                variables[f"start{index}"], variables[f"end{index}"] = start, end
                declarations.append(f"$start{index}: Time!, $end{index}: Time!")
                fields.append(
                    f"p{index}: timelogs(groupId: $group, startDate: $start{index}, endDate: $end{index}) "
                    "{ count totalSpentTime }"
                )
            data = self.graphql_query(f"query({', '.join(declarations)}) {{ {' '.join(fields)} }}", variables)
            figures.extend(
                (int(data[f"p{i}"]["count"]), int(data[f"p{i}"]["totalSpentTime"])) for i in range(len(batch))
            )
        return figures

    def group_members_with_titles(self: GitLabTransport, group: str) -> list[GitLabMember]:
        """``GET /groups/:id/members/all`` with each member's ``job_title`` (empty when not shown)."""
        handle = self.client.groups.get(group, lazy=True)
        members = []
        for raw in self._pages(f"GET /groups/{group}/members/all", handle.members_all.list):
            user = user_from(raw)
            if user is not None:
                members.append(GitLabMember(user, str(raw.get("job_title") or "")))
        return members

    def upload_file(self: GitLabTransport, project: str, filename: str, content: bytes) -> str:
        """``POST /projects/:id/uploads``: the Markdown that embeds the uploaded file.

        The multipart body is encoded here, as bytes, not by python-gitlab's ``upload()``: that one streams
        it from a ``MultipartEncoder`` built once, and its retries (429, 5xx, time-outs) resend the exhausted
        stream under the first ``Content-Length`` - the retry sends no bytes and waits for an answer until
        the read time-out, ``max_retries`` times over (a hung roll-up in the chaos run, #23).
        """
        body, content_type = encode_multipart_formdata({"file": (filename, content)})
        path = f"/projects/{self._project(project).encoded_id}/uploads"
        raw = self._call(
            f"POST /projects/{project}/uploads",
            lambda: self.client.http_post(path, post_data=body, raw=True, extra_headers={"Content-type": content_type}),
        )
        return str(raw["markdown"])

    def find_epic(self: GitLabTransport, group: str, title: str) -> GitLabEpic | None:
        """``GET /groups/:id/epics?search=``: the epic titled exactly ``title`` (Premium; None on Free/CE,
        where the epics API is not mounted: 404)."""
        handle = self.client.groups.get(group, lazy=True)
        try:
            for raw in self._pages(f"GET /groups/{group}/epics", handle.epics.list, search=title):
                if raw.get("title") == title:
                    return GitLabEpic(int(raw["id"]), int(raw["iid"]), str(raw["title"]))
        except GitLabNotFoundError:
            return None
        return None

    def epic_issue_ids(self: GitLabTransport, group: str, epic_iid: int) -> set[int]:
        """``GET /groups/:id/epics/:iid/issues``: global ids of the issues under an epic."""
        epic = self.client.groups.get(group, lazy=True).epics.get(epic_iid, lazy=True)
        return {int(raw["id"]) for raw in self._pages(f"GET /groups/{group}/epics/{epic_iid}/issues", epic.issues.list)}

    def add_issue_to_epic(self: GitLabTransport, group: str, epic_iid: int, issue_id: int) -> None:
        """``POST /groups/:id/epics/:iid/issues/:issue_id`` (the issue's global id)."""
        epic = self.client.groups.get(group, lazy=True).epics.get(epic_iid, lazy=True)
        self._call(
            f"POST /groups/{group}/epics/{epic_iid}/issues/{issue_id}",
            lambda: epic.issues.create({"issue_id": issue_id}, **WRITE_ONCE),
        )

    def work_item_parents(self: GitLabTransport, issue_ids: Sequence[int]) -> dict[int, str]:
        """Title of each issue's parent work item (``WorkItemWidgetHierarchy.parent``: the epic an issue
        sits under, where the instance has them), ``WORK_ITEMS_PER_QUERY`` aliased ``workItem`` a request.
        An issue's work item shares its global id (``gid://gitlab/WorkItem/<issue id>``).

        :return: issue id -> parent title, for issues that have a parent.
        """
        parents: dict[int, str] = {}
        wanted = sorted(set(issue_ids))
        for offset in range(0, len(wanted), WORK_ITEMS_PER_QUERY):
            batch = wanted[offset : offset + WORK_ITEMS_PER_QUERY]
            declarations = ", ".join(f"$w{index}: WorkItemID!" for index in range(len(batch)))
            fields = " ".join(
                f"w{index}: workItem(id: $w{index}) "
                "{ widgets { ... on WorkItemWidgetHierarchy { parent { id title } } } }"
                for index in range(len(batch))
            )
            variables = {f"w{index}": f"gid://gitlab/WorkItem/{issue_id}" for index, issue_id in enumerate(batch)}
            data = self.graphql_query(f"query({declarations}) {{ {fields} }}", variables)
            for index, issue_id in enumerate(batch):
                for widget in (data.get(f"w{index}") or {}).get("widgets") or ():
                    parent = (widget or {}).get("parent")
                    if parent and parent.get("title"):
                        parents[issue_id] = str(parent["title"])
        return parents
