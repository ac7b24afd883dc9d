"""GitLab hook: one typed method per remote operation the jobs use, over python-gitlab (REST) and its
GraphQL client, with GitLab's retry behaviour and the caller's pacing.

Connection (type ``ps_gitlab``): host = the instance URL (``https://gitlab.com``), password = a
personal/project/group access token; extras ``ca_bundle`` (PEM file trusted instead of the system
store), ``per_page`` (default 100), ``timeout`` (seconds, default 60), ``max_retries`` (default 10).

Both clients obey 429 ``Retry-After`` (``obey_rate_limit``) and retry 5xx
(``retry_transient_errors``) up to ``max_retries`` times. Every method returns plain dataclasses and
raises only :class:`GitLabApiError` (:class:`GitLabNotFoundError` for 404). This is the only module
that imports python-gitlab.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from airflow.sdk import BaseHook

from ps_integrations.exceptions import GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab_timesheets import (
    TIMELOG_FIGURES_PER_QUERY,
    TIMELOGS_QUERY_TEMPLATE,
    WORK_ITEMS_PER_QUERY,
    GitLabEpic,
    GitLabMember,
    GitLabTimelog,
    TimelogListing,
    timelog_record,
    timelog_records,
)
from ps_integrations.pacing import Pacer

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE_SIZE = 100
__all__ = [  # the timesheet records are defined beside this module, re-exported here
    "TIMELOGS_QUERY_TEMPLATE",
    "GitLabEpic",
    "GitLabHook",
    "GitLabIssue",
    "GitLabMember",
    "GitLabNote",
    "GitLabTimelog",
    "GitLabUser",
    "TimelogListing",
    "timelog_record",
    "timelog_records",
]


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str = ""
    public_email: str = ""
    state: str = "active"


@dataclass(frozen=True)
class GitLabIssue:
    """One issue as the REST API lists it (``time_stats`` included in listings since GitLab 8.x)."""

    project: str
    iid: int
    id: int
    title: str
    description: str
    state: str  # "opened" | "closed"
    labels: tuple[str, ...]
    web_url: str
    created_at: str
    updated_at: str
    closed_at: str | None
    due_date: str | None
    assignees: tuple[GitLabUser, ...]
    author: GitLabUser | None
    confidential: bool
    time_estimate: int  # seconds
    total_time_spent: int  # seconds

    @property
    def reference(self) -> str:
        return f"{self.project}#{self.iid}"


@dataclass(frozen=True)
class GitLabNote:
    id: int
    body: str
    author_username: str
    created_at: str
    system: bool


def _user(raw: Any) -> GitLabUser | None:
    if not isinstance(raw, dict) or raw.get("id") is None:
        return None
    return GitLabUser(
        id=int(raw["id"]),
        username=str(raw.get("username") or ""),
        name=str(raw.get("name") or ""),
        public_email=str(raw.get("public_email") or raw.get("email") or ""),
        state=str(raw.get("state") or "active"),
    )


def _issue(project: str, raw: dict[str, Any]) -> GitLabIssue:
    stats = raw.get("time_stats") or {}
    return GitLabIssue(
        project=project,
        iid=int(raw["iid"]),
        id=int(raw.get("id") or 0),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        state=str(raw.get("state") or ""),
        labels=tuple(str(label) for label in raw.get("labels") or ()),
        web_url=str(raw.get("web_url") or ""),
        created_at=str(raw.get("created_at") or ""),
        updated_at=str(raw.get("updated_at") or ""),
        closed_at=str(raw["closed_at"]) if raw.get("closed_at") else None,
        due_date=str(raw["due_date"]) if raw.get("due_date") else None,
        assignees=tuple(user for user in map(_user, raw.get("assignees") or ()) if user is not None),
        author=_user(raw.get("author")),
        confidential=bool(raw.get("confidential")),
        time_estimate=int(stats.get("time_estimate") or 0),
        total_time_spent=int(stats.get("total_time_spent") or 0),
    )


def _note(raw: dict[str, Any]) -> GitLabNote:
    return GitLabNote(
        id=int(raw["id"]),
        body=str(raw.get("body") or ""),
        author_username=str((raw.get("author") or {}).get("username") or ""),
        created_at=str(raw.get("created_at") or ""),
        system=bool(raw.get("system")),
    )


def _joined(labels: tuple[str, ...] | list[str]) -> str:
    return ",".join(labels)


class GitLabHook(BaseHook):
    """python-gitlab REST and GraphQL clients for one GitLab connection."""

    conn_name_attr = "gitlab_conn_id"
    default_conn_name = "gitlab_default"
    conn_type = "ps_gitlab"
    hook_name = "GitLab (ps-integrations)"

    def __init__(self, gitlab_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gitlab_conn_id = gitlab_conn_id
        self._request_pacer: Pacer | None = None
        self._note_pacer: Pacer | None = None
        self.requests_made = 0  # REST requests and GraphQL pages, for run summaries and benchmarks

    def pace(self, requests_per_minute: float | None, notes_per_minute: float | None = None) -> GitLabHook:
        """Space calls evenly below GitLab's limits (98% of them: skew never fills GitLab's window).

        :param requests_per_minute: the instance's authenticated API limit; ``None``: no pacing.
        :param notes_per_minute: ``notes_create_limit`` (300/min by default), paced on top of the global one.
            GitLab counts it in fixed windows, so the burst must fit in the 2% margin below the limit.
        """
        self._request_pacer = Pacer(max(1.0, requests_per_minute * 0.98), burst=5) if requests_per_minute else None
        self._note_pacer = (
            Pacer(max(1.0, notes_per_minute * 0.98), burst=min(5, int(notes_per_minute * 0.02)))
            if notes_per_minute
            else None
        )
        return self

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"host": "GitLab URL", "password": "Access token"},
            "placeholders": {"host": "https://gitlab.com", "extra": '{"ca_bundle": null, "per_page": 100}'},
        }

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.gitlab_conn_id)

    def _field(self, name: str) -> Any:
        value = self._connection.extra_dejson.get(name)
        return None if value == "" else value

    @cached_property
    def url(self) -> str:
        host = (self._connection.host or "").rstrip("/")
        if not host:
            raise GitLabApiError(0, "", f"connection {self.gitlab_conn_id!r} has no host (the GitLab URL)")
        return host if "://" in host else f"https://{host}"

    @property
    def _verify(self) -> bool | str:
        return self._field("ca_bundle") or True

    @property
    def max_retries(self) -> int:
        return int(self._field("max_retries") or 10)

    @cached_property
    def client(self) -> Any:
        """A python-gitlab ``Gitlab`` client (REST v4)."""
        import gitlab
        import requests

        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE must not override the configured CA
        return gitlab.Gitlab(
            self.url,
            private_token=self._connection.password,
            ssl_verify=self._verify,
            timeout=float(self._field("timeout") or 60),
            per_page=int(self._field("per_page") or 100),
            retry_transient_errors=True,
            session=session,
        )

    def get_conn(self) -> Any:
        return self.client

    @cached_property
    def graphql(self) -> Any:
        """python-gitlab's GraphQL client with the same retry behaviour as REST."""
        import gitlab
        import httpx

        verify = self._verify
        context: ssl.SSLContext | bool = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else True
        client = httpx.Client(
            headers={"Authorization": f"Bearer {self._connection.password}"},
            timeout=float(self._field("timeout") or 60),
            verify=context,
            trust_env=False,
        )
        return gitlab.GraphQL(
            self.url,
            token=self._connection.password,
            client=client,
            max_retries=self.max_retries,
            obey_rate_limit=True,
            retry_transient_errors=True,
        )

    def graphql_query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL query; GraphQL ``errors`` become ``GitLabApiError``."""
        import gitlab.exceptions
        from gql.transport.exceptions import TransportQueryError

        self._wait(self._request_pacer)
        try:
            return self.graphql.execute(query, variable_values=variables or {})
        except TransportQueryError as error:
            messages = "; ".join(str(item.get("message")) for item in (error.errors or [])) or str(error)
            raise GitLabApiError(200, "POST /api/graphql", f"GraphQL errors: {messages}") from None
        except gitlab.exceptions.GitlabError as error:
            raise GitLabApiError(error.response_code or 0, "POST /api/graphql", str(error.error_message)) from None

    def graphql_nodes(self, query: str, variables: dict[str, Any], path: list[str]) -> Iterator[dict[str, Any]]:
        """Every node of a GraphQL connection, following ``pageInfo { hasNextPage endCursor }``.

        :param query: a query taking ``$after: String`` and selecting ``nodes`` and
            ``pageInfo { hasNextPage endCursor }`` on the connection.
        :param variables: the other variables.
        :param path: keys from ``data`` to the connection, e.g. ``["group", "timelogs"]``.
        """
        after: str | None = None
        while True:
            data = self.graphql_query(query, {**variables, "after": after})
            node: Any = data
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                return
            yield from node.get("nodes") or []
            page_info = node.get("pageInfo") or {}
            if not page_info.get("hasNextPage"):
                return
            after = page_info.get("endCursor")

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.client.auth()
            user = self.client.user
        except Exception as error:
            return False, str(error)
        return True, f"Connection successfully tested as {getattr(user, 'username', '?')}"

    # --- the REST calls: pacing and errors in one place -----------------------------------------------
    def _wait(self, pacer: Pacer | None) -> None:
        self.requests_made += 1
        if pacer is not None:
            pacer.wait()

    def _call(self, endpoint: str, call: Callable[[], T], *, pacer: Pacer | None = None) -> T:
        """One REST request, paced; python-gitlab's errors become ``GitLabApiError`` naming ``endpoint``."""
        import gitlab.exceptions

        self._wait(self._request_pacer)
        if pacer is not None:
            pacer.wait()
        try:
            return call()
        except gitlab.exceptions.GitlabError as error:
            status = int(error.response_code or 0)
            kind = GitLabNotFoundError if status == 404 else GitLabApiError
            raise kind(status, endpoint, str(error.error_message)) from None
        except OSError as error:  # connection refused or reset after python-gitlab's retries
            raise GitLabApiError(0, endpoint, f"{type(error).__name__}: {error}") from None

    def _pages(self, endpoint: str, list_page: Callable[..., Any], **filters: Any) -> Iterator[dict[str, Any]]:
        """Every item of a keyset- or offset-paginated listing, one paced request per page.

        Follows ``X-Next-Page`` (GitLab drops ``X-Total`` past 10,000 items, so the total is never used).
        """
        import gitlab.exceptions

        listing = self._call(endpoint, lambda: list_page(per_page=PAGE_SIZE, iterator=True, **filters))
        while True:
            try:
                for item in itertools.islice(listing, PAGE_SIZE):
                    yield item.asdict()
            except gitlab.exceptions.GitlabError as error:
                status = int(error.response_code or 0)
                raise GitLabApiError(status, endpoint, str(error.error_message)) from None
            if not listing.next_page:
                return
            self._wait(self._request_pacer)  # python-gitlab fetches the next page when this one is consumed

    def _project(self, project: str) -> Any:
        return self.client.projects.get(project, lazy=True)

    # --- issues ----------------------------------------------------------------------------------------
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
    ) -> Iterator[GitLabIssue]:
        """``GET /projects/:id/issues``: every issue matching, page by page (no ``search``: GitLab limits
        searches separately, 30 per minute by default).

        :param state: ``all``, ``opened`` or ``closed``.
        :param labels: issues carrying every one of these labels.
        :param updated_after: ISO 8601 moment.
        :param iids: only these issues.
        """
        filters: dict[str, Any] = {"state": state, "order_by": order_by, "sort": sort}
        if labels:
            filters["labels"] = _joined(labels)
        if updated_after:
            filters["updated_after"] = updated_after
        if iids:
            filters["iids"] = list(iids)
        handle = self._project(project)
        for raw in self._pages(f"GET /projects/{project}/issues", handle.issues.list, **filters):
            yield _issue(project, raw)

    def get_issue(self, project: str, iid: int) -> GitLabIssue:
        """``GET /projects/:id/issues/:iid``; 404 raises :class:`GitLabNotFoundError`."""
        handle = self._project(project)
        raw = self._call(f"GET /projects/{project}/issues/{iid}", lambda: handle.issues.get(iid))
        return _issue(project, raw.asdict())

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
    ) -> GitLabIssue:
        """``POST /projects/:id/issues``."""
        fields: dict[str, Any] = {"title": title, "description": description}
        if labels:
            fields["labels"] = _joined(labels)
        if assignee_ids:
            fields["assignee_ids"] = list(assignee_ids)
        if due_date:
            fields["due_date"] = due_date
        if confidential:
            fields["confidential"] = True
        handle = self._project(project)
        raw = self._call(f"POST /projects/{project}/issues", lambda: handle.issues.create(fields))
        return _issue(project, raw.asdict())

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
    ) -> GitLabIssue:
        """``PUT /projects/:id/issues/:iid`` with only the given fields.

        Labels change through ``add_labels``/``remove_labels`` so a label someone else set stays; note
        that GitLab's scoped labels (``scope::value``) are exclusive: adding one removes its siblings.

        :param state_event: ``close`` or ``reopen``.
        """
        fields: dict[str, Any] = {}
        if title is not None:
            fields["title"] = title
        if description is not None:
            fields["description"] = description
        if add_labels:
            fields["add_labels"] = _joined(add_labels)
        if remove_labels:
            fields["remove_labels"] = _joined(remove_labels)
        if due_date is not None:
            fields["due_date"] = due_date
        if assignee_ids is not None:
            fields["assignee_ids"] = list(assignee_ids)
        if state_event is not None:
            fields["state_event"] = state_event
        handle = self._project(project)
        raw = self._call(f"PUT /projects/{project}/issues/{iid}", lambda: handle.issues.update(iid, fields))
        return _issue(project, raw)

    # --- notes -----------------------------------------------------------------------------------------
    def list_notes(self, project: str, iid: int, *, newest_first: bool = True) -> Iterator[GitLabNote]:
        """``GET /projects/:id/issues/:iid/notes``, newest first by default, page by page."""
        issue = self._project(project).issues.get(iid, lazy=True)
        sort = "desc" if newest_first else "asc"
        endpoint = f"GET /projects/{project}/issues/{iid}/notes"
        for raw in self._pages(endpoint, issue.notes.list, sort=sort, order_by="created_at"):
            yield _note(raw)

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote:
        """``POST /projects/:id/issues/:iid/notes``, paced by ``notes_per_minute`` too."""
        issue = self._project(project).issues.get(iid, lazy=True)
        endpoint = f"POST /projects/{project}/issues/{iid}/notes"
        raw = self._call(endpoint, lambda: issue.notes.create({"body": body}), pacer=self._note_pacer)
        return _note(raw.asdict())

    # --- users -----------------------------------------------------------------------------------------
    def find_user(self, username: str) -> GitLabUser | None:
        """``GET /users?username=``: the user, or None when there is none."""
        found = self._call("GET /users", lambda: self.client.users.list(username=username))
        users = [_user(raw.asdict()) for raw in found]
        return next((user for user in users if user is not None), None)

    def get_user(self, user_id: int) -> GitLabUser:
        """``GET /users/:id`` (``public_email`` is empty unless the user made it public)."""
        raw = self._call(f"GET /users/{user_id}", lambda: self.client.users.get(user_id))
        user = _user(raw.asdict())
        if user is None:
            raise GitLabApiError(200, f"GET /users/{user_id}", "answer without an id")
        return user

    def group_members(self, group: str) -> list[GitLabUser]:
        """``GET /groups/:id/members/all``: direct and inherited members."""
        handle = self.client.groups.get(group, lazy=True)
        members = self._pages(f"GET /groups/{group}/members/all", handle.members_all.list)
        return [user for user in map(_user, members) if user is not None]

    # --- timesheets ---
    def group_gid(self, group: str) -> str:
        """``GET /groups/:id``: the group's GraphQL global id (``gid://gitlab/Group/N``)."""
        raw = self._call(f"GET /groups/{group}", lambda: self.client.groups.get(group))
        return f"gid://gitlab/Group/{int(raw.id)}"

    def type_fields(self, type_name: str) -> frozenset[str]:
        """GraphQL introspection of one type's field names (empty: the instance has no such type).
        Works on every edition, so it tells what an instance offers before a query asks for it."""
        data = self.graphql_query(
            "query($name: String!) { __type(name: $name) { fields { name } } }", {"name": type_name}
        )
        return frozenset(str(item["name"]) for item in ((data.get("__type") or {}).get("fields") or []))

    def list_timelogs(self, group_gid: str, start: str, end: str, *, with_epic: bool = False) -> TimelogListing:
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

    def timelog_figures(self, group_gid: str, ranges: list[tuple[str, str]]) -> list[tuple[int, int]]:
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

    def group_members_with_titles(self, group: str) -> list[GitLabMember]:
        """``GET /groups/:id/members/all`` with each member's ``job_title`` (empty when not shown)."""
        handle = self.client.groups.get(group, lazy=True)
        members = []
        for raw in self._pages(f"GET /groups/{group}/members/all", handle.members_all.list):
            user = _user(raw)
            if user is not None:
                members.append(GitLabMember(user, str(raw.get("job_title") or "")))
        return members

    def upload_file(self, project: str, filename: str, content: bytes) -> str:
        """``POST /projects/:id/uploads``: the Markdown that embeds the uploaded file."""
        handle = self._project(project)
        raw = self._call(f"POST /projects/{project}/uploads", lambda: handle.upload(filename, filedata=content))
        return str(raw["markdown"])

    def find_epic(self, group: str, title: str) -> GitLabEpic | None:
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

    def epic_issue_ids(self, group: str, epic_iid: int) -> set[int]:
        """``GET /groups/:id/epics/:iid/issues``: global ids of the issues under an epic."""
        epic = self.client.groups.get(group, lazy=True).epics.get(epic_iid, lazy=True)
        return {int(raw["id"]) for raw in self._pages(f"GET /groups/{group}/epics/{epic_iid}/issues", epic.issues.list)}

    def add_issue_to_epic(self, group: str, epic_iid: int, issue_id: int) -> None:
        """``POST /groups/:id/epics/:iid/issues/:issue_id`` (the issue's global id)."""
        epic = self.client.groups.get(group, lazy=True).epics.get(epic_iid, lazy=True)
        self._call(
            f"POST /groups/{group}/epics/{epic_iid}/issues/{issue_id}",
            lambda: epic.issues.create({"issue_id": issue_id}),
        )

    def work_item_parents(self, issue_ids: Sequence[int]) -> dict[int, str]:
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

    # --- engagement close-out ---
    def group_member_job_titles(self, group: str) -> dict[str, str]:
        """``GET /groups/:id/members/all``: username -> job title of every direct and inherited member
        (``""`` when the member has none)."""
        handle = self.client.groups.get(group, lazy=True)
        members = self._pages(f"GET /groups/{group}/members/all", handle.members_all.list)
        return {str(raw["username"]): str(raw.get("job_title") or "") for raw in members if raw.get("username")}

    # --- repository ------------------------------------------------------------------------------------
    def get_file(self, project: str, path: str, ref: str) -> RepositoryFile:
        """``GET /projects/:id/repository/files/:file_path?ref=``: a file's text at a branch, tag or commit.

        :param path: the file's path in the repository (``data/services.yml``).
        :param ref: branch, tag or commit SHA.
        :return: the text (UTF-8) with the blob id and the commits GitLab names; 404 (no such project,
            file or ref) raises :class:`GitLabNotFoundError`.
        """
        handle = self._project(project)
        endpoint = f"GET /projects/{project}/repository/files/{path}"
        raw = self._call(endpoint, lambda: handle.files.get(file_path=path, ref=ref))
        try:
            content = raw.decode().decode("utf-8")
        except UnicodeDecodeError as error:
            raise GitLabApiError(200, endpoint, f"{path} at {ref} is not UTF-8 text: {error}") from None
        return RepositoryFile(
            path=path,
            ref=ref,
            content=content,
            blob_id=str(raw.blob_id),
            last_commit_id=str(getattr(raw, "last_commit_id", "") or ""),
            commit_id=str(getattr(raw, "commit_id", "") or ""),
        )

    # --- merge requests ---
    def get_branch(self, project: str, branch: str) -> GitLabBranch | None:
        """``GET /projects/:id/repository/branches/:branch``; None when there is no such branch."""
        handle = self._project(project)
        try:
            raw = self._call(f"GET /projects/{project}/repository/branches", lambda: handle.branches.get(branch))
        except GitLabNotFoundError:
            return None
        return _branch(raw.asdict())

    def create_branch(self, project: str, branch: str, ref: str) -> GitLabBranch:
        """``POST /projects/:id/repository/branches`` from ``ref`` (400 when the branch exists)."""
        handle = self._project(project)
        endpoint = f"POST /projects/{project}/repository/branches"
        raw = self._call(endpoint, lambda: handle.branches.create({"branch": branch, "ref": ref}))
        return _branch(raw.asdict())

    def delete_branch(self, project: str, branch: str) -> None:
        """``DELETE /projects/:id/repository/branches/:branch``."""
        handle = self._project(project)
        self._call(f"DELETE /projects/{project}/repository/branches", lambda: handle.branches.delete(branch))

    def commit_file(
        self, project: str, branch: str, path: str, content: str, message: str, *, start_branch: str | None = None
    ) -> GitLabCommit:
        """``POST /projects/:id/repository/commits`` with one ``update`` action on ``path``.

        :param start_branch: create ``branch`` from this one in the same request.
        """
        body: dict[str, Any] = {
            "branch": branch,
            "commit_message": message,
            "actions": [{"action": "update", "file_path": path, "content": content}],
        }
        if start_branch:
            body["start_branch"] = start_branch
        handle = self._project(project)
        raw = self._call(f"POST /projects/{project}/repository/commits", lambda: handle.commits.create(body))
        return _commit(raw.asdict())

    def compare(self, project: str, from_ref: str, to_ref: str) -> GitLabComparison:
        """``GET /projects/:id/repository/compare?from=&to=``: the commits ``to_ref`` has that the merge
        base of the two has not (oldest first) and the diffs from that merge base."""
        handle = self._project(project)
        endpoint = f"GET /projects/{project}/repository/compare"
        raw = self._call(endpoint, lambda: handle.repository_compare(from_ref, to_ref))
        return GitLabComparison(
            commits=tuple(_commit(commit) for commit in raw.get("commits") or ()),
            diffs=tuple(
                GitLabDiff(
                    old_path=str(diff.get("old_path") or ""),
                    new_path=str(diff.get("new_path") or ""),
                    diff=str(diff.get("diff") or ""),
                    new_file=bool(diff.get("new_file")),
                    deleted_file=bool(diff.get("deleted_file")),
                )
                for diff in raw.get("diffs") or ()
            ),
        )

    def list_merge_requests(
        self,
        project: str,
        *,
        source_branch: str | None = None,
        target_branch: str | None = None,
        state: str = "all",
    ) -> list[GitLabMergeRequest]:
        """``GET /projects/:id/merge_requests``, newest first, page by page.

        :param state: ``opened``, ``closed``, ``merged``, ``locked`` or ``all``.
        """
        filters: dict[str, Any] = {"state": state, "order_by": "created_at", "sort": "desc"}
        if source_branch:
            filters["source_branch"] = source_branch
        if target_branch:
            filters["target_branch"] = target_branch
        handle = self._project(project)
        found = self._pages(f"GET /projects/{project}/merge_requests", handle.mergerequests.list, **filters)
        return [_merge_request(project, raw) for raw in found]

    def get_merge_request(self, project: str, iid: int) -> GitLabMergeRequest:
        """``GET /projects/:id/merge_requests/:iid``; 404 raises :class:`GitLabNotFoundError`."""
        handle = self._project(project)
        raw = self._call(f"GET /projects/{project}/merge_requests/{iid}", lambda: handle.mergerequests.get(iid))
        return _merge_request(project, raw.asdict())

    def create_merge_request(
        self,
        project: str,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        *,
        labels: tuple[str, ...] = (),
        remove_source_branch: bool = True,
    ) -> GitLabMergeRequest:
        """``POST /projects/:id/merge_requests`` (409 while another one is open for the source branch)."""
        fields: dict[str, Any] = {
            "source_branch": source_branch,
            "target_branch": target_branch,
            "title": title,
            "description": description,
            "remove_source_branch": remove_source_branch,
        }
        if labels:
            fields["labels"] = _joined(labels)
        handle = self._project(project)
        raw = self._call(f"POST /projects/{project}/merge_requests", lambda: handle.mergerequests.create(fields))
        return _merge_request(project, raw.asdict())

    def update_merge_request(
        self,
        project: str,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
        state_event: str | None = None,
    ) -> GitLabMergeRequest:
        """``PUT /projects/:id/merge_requests/:iid`` with only the given fields.

        :param state_event: ``close`` or ``reopen``.
        """
        fields: dict[str, Any] = {}
        if title is not None:
            fields["title"] = title
        if description is not None:
            fields["description"] = description
        if state_event is not None:
            fields["state_event"] = state_event
        handle = self._project(project)
        endpoint = f"PUT /projects/{project}/merge_requests/{iid}"
        raw = self._call(endpoint, lambda: handle.mergerequests.update(iid, fields))
        return _merge_request(project, raw)

    def close_merge_request(self, project: str, iid: int) -> GitLabMergeRequest:
        """Close a merge request (``state_event=close``); closing never merges."""
        return self.update_merge_request(project, iid, state_event="close")

    def create_merge_request_note(self, project: str, iid: int, body: str) -> GitLabNote:
        """``POST /projects/:id/merge_requests/:iid/notes``, paced by ``notes_per_minute`` too."""
        request = self._project(project).mergerequests.get(iid, lazy=True)
        endpoint = f"POST /projects/{project}/merge_requests/{iid}/notes"
        raw = self._call(endpoint, lambda: request.notes.create({"body": body}), pacer=self._note_pacer)
        return _note(raw.asdict())


@dataclass(frozen=True)
class RepositoryFile:
    """A repository file at a ref (``GET /projects/:id/repository/files/:path``)."""

    path: str
    ref: str
    content: str  # decoded from GitLab's base64, UTF-8
    blob_id: str  # git's blob SHA: the same content has the same id on every ref
    last_commit_id: str  # the last commit that changed the file, up to ref
    commit_id: str = ""  # the commit ref points at


# --- merge requests ---
@dataclass(frozen=True)
class GitLabBranch:
    name: str
    commit_id: str


@dataclass(frozen=True)
class GitLabCommit:
    id: str
    title: str
    message: str
    author_name: str
    author_email: str
    created_at: str
    parent_ids: tuple[str, ...]


@dataclass(frozen=True)
class GitLabDiff:
    old_path: str
    new_path: str
    diff: str  # unified diff from the first @@ hunk on, as GitLab gives it
    new_file: bool
    deleted_file: bool


@dataclass(frozen=True)
class GitLabComparison:
    commits: tuple[GitLabCommit, ...]
    diffs: tuple[GitLabDiff, ...]


@dataclass(frozen=True)
class GitLabMergeRequest:
    project: str
    iid: int
    id: int
    title: str
    description: str
    state: str  # opened | closed | merged | locked
    source_branch: str
    target_branch: str
    sha: str  # the source branch's head
    web_url: str
    author_username: str
    labels: tuple[str, ...]

    @property
    def reference(self) -> str:
        return f"{self.project}!{self.iid}"


def _branch(raw: dict[str, Any]) -> GitLabBranch:
    return GitLabBranch(name=str(raw.get("name") or ""), commit_id=str((raw.get("commit") or {}).get("id") or ""))


def _commit(raw: dict[str, Any]) -> GitLabCommit:
    return GitLabCommit(
        id=str(raw.get("id") or ""),
        title=str(raw.get("title") or ""),
        message=str(raw.get("message") or ""),
        author_name=str(raw.get("author_name") or ""),
        author_email=str(raw.get("author_email") or ""),
        created_at=str(raw.get("created_at") or ""),
        parent_ids=tuple(str(parent) for parent in raw.get("parent_ids") or ()),
    )


def _merge_request(project: str, raw: dict[str, Any]) -> GitLabMergeRequest:
    return GitLabMergeRequest(
        project=project,
        iid=int(raw["iid"]),
        id=int(raw.get("id") or 0),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        state=str(raw.get("state") or ""),
        source_branch=str(raw.get("source_branch") or ""),
        target_branch=str(raw.get("target_branch") or ""),
        sha=str(raw.get("sha") or ""),
        web_url=str(raw.get("web_url") or ""),
        author_username=str((raw.get("author") or {}).get("username") or ""),
        labels=tuple(str(label) for label in raw.get("labels") or ()),
    )
