"""GitLab hook: one typed method per remote operation the jobs use, over python-gitlab (REST) and its
GraphQL client, with GitLab's retry behaviour and the caller's pacing.

Connection (type ``ps_gitlab``): host = the instance URL (``https://gitlab.com``), password = a
personal/project/group access token; extras ``ca_bundle`` (PEM file trusted instead of the system
store), ``per_page`` (default 100), ``timeout`` (seconds, default 60), ``max_retries`` (default 10).

Both clients obey 429 ``Retry-After`` (``obey_rate_limit``) and retry 5xx
(``retry_transient_errors``) up to ``max_retries`` times - except writes that would be made twice
(issues, notes, commits, merge requests, epic links: ``WRITE_ONCE``). Every method returns plain dataclasses and
raises only :class:`GitLabApiError` (:class:`GitLabNotFoundError` for 404). This is the only module
that imports python-gitlab.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, TypeVar

from airflow.sdk import BaseHook

from ps_integrations.exceptions import GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab_records import (
    GitLabIssue,
    GitLabNote,
    GitLabUser,
    issue_from,
    joined_labels,
    note_from,
    user_from,
)
from ps_integrations.hooks.gitlab_repository import (
    GitLabBranch,
    GitLabCommit,
    GitLabComparison,
    GitLabMergeRequest,
    RepositoryFile,
    RepositoryOperations,
)
from ps_integrations.hooks.gitlab_timesheets import (
    TIMELOGS_QUERY_TEMPLATE,
    GitLabEpic,
    GitLabMember,
    GitLabTimelog,
    TimelogListing,
    TimesheetOperations,
    timelog_record,
    timelog_records,
)
from ps_integrations.hooks.gitlab_transport import WRITE_ONCE
from ps_integrations.pacing import Pacer

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE_SIZE = 100
__all__ = [  # the records are defined beside this module (no python-gitlab there), re-exported here
    "TIMELOGS_QUERY_TEMPLATE",
    "GitLabBranch",
    "GitLabCommit",
    "GitLabComparison",
    "GitLabEpic",
    "GitLabHook",
    "GitLabIssue",
    "GitLabMember",
    "GitLabMergeRequest",
    "GitLabNote",
    "GitLabTimelog",
    "GitLabUser",
    "RepositoryFile",
    "TimelogListing",
    "timelog_record",
    "timelog_records",
]


class GitLabHook(TimesheetOperations, RepositoryOperations, BaseHook):
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
        self._projects: dict[str, Any] = {}

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
        """The project's lazy python-gitlab handle, made once: building one creates its ~90 managers
        (~8 ms of CPU), a sixth of the sync's CPU when made per created issue."""
        handle = self._projects.get(project)
        if handle is None:
            handle = self._projects[project] = self.client.projects.get(project, lazy=True)
        return handle

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
            filters["labels"] = joined_labels(labels)
        if updated_after:
            filters["updated_after"] = updated_after
        if iids:
            filters["iids"] = list(iids)
        handle = self._project(project)
        for raw in self._pages(f"GET /projects/{project}/issues", handle.issues.list, **filters):
            yield issue_from(project, raw)

    def get_issue(self, project: str, iid: int) -> GitLabIssue:
        """``GET /projects/:id/issues/:iid``; 404 raises :class:`GitLabNotFoundError`."""
        handle = self._project(project)
        raw = self._call(f"GET /projects/{project}/issues/{iid}", lambda: handle.issues.get(iid))
        return issue_from(project, raw.asdict())

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
            fields["labels"] = joined_labels(labels)
        if assignee_ids:
            fields["assignee_ids"] = list(assignee_ids)
        if due_date:
            fields["due_date"] = due_date
        if confidential:
            fields["confidential"] = True
        handle = self._project(project)
        raw = self._call(f"POST /projects/{project}/issues", lambda: handle.issues.create(fields, **WRITE_ONCE))
        return issue_from(project, raw.asdict())

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
            fields["add_labels"] = joined_labels(add_labels)
        if remove_labels:
            fields["remove_labels"] = joined_labels(remove_labels)
        if due_date is not None:
            fields["due_date"] = due_date
        if assignee_ids is not None:
            fields["assignee_ids"] = list(assignee_ids)
        if state_event is not None:
            fields["state_event"] = state_event
        handle = self._project(project)
        raw = self._call(f"PUT /projects/{project}/issues/{iid}", lambda: handle.issues.update(iid, fields))
        return issue_from(project, raw)

    # --- notes -----------------------------------------------------------------------------------------
    def list_notes(self, project: str, iid: int, *, newest_first: bool = True) -> Iterator[GitLabNote]:
        """``GET /projects/:id/issues/:iid/notes``, newest first by default, page by page."""
        issue = self._project(project).issues.get(iid, lazy=True)
        sort = "desc" if newest_first else "asc"
        endpoint = f"GET /projects/{project}/issues/{iid}/notes"
        for raw in self._pages(endpoint, issue.notes.list, sort=sort, order_by="created_at"):
            yield note_from(raw)

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote:
        """``POST /projects/:id/issues/:iid/notes``, paced by ``notes_per_minute`` too."""
        issue = self._project(project).issues.get(iid, lazy=True)
        endpoint = f"POST /projects/{project}/issues/{iid}/notes"
        raw = self._call(endpoint, lambda: issue.notes.create({"body": body}, **WRITE_ONCE), pacer=self._note_pacer)
        return note_from(raw.asdict())

    # --- users -----------------------------------------------------------------------------------------
    def find_user(self, username: str) -> GitLabUser | None:
        """``GET /users?username=``: the user, or None when there is none."""
        found = self._call("GET /users", lambda: self.client.users.list(username=username))
        users = [user_from(raw.asdict()) for raw in found]
        return next((user for user in users if user is not None), None)

    def get_user(self, user_id: int) -> GitLabUser:
        """``GET /users/:id`` (``public_email`` is empty unless the user made it public)."""
        raw = self._call(f"GET /users/{user_id}", lambda: self.client.users.get(user_id))
        user = user_from(raw.asdict())
        if user is None:
            raise GitLabApiError(200, f"GET /users/{user_id}", "answer without an id")
        return user

    def group_members(self, group: str) -> list[GitLabUser]:
        """``GET /groups/:id/members/all``: direct and inherited members."""
        handle = self.client.groups.get(group, lazy=True)
        members = self._pages(f"GET /groups/{group}/members/all", handle.members_all.list)
        return [user for user in map(user_from, members) if user is not None]
