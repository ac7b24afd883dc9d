"""GitLab hook: python-gitlab (REST) and its GraphQL client, with GitLab's retry behaviour.

Connection (type ``ps_gitlab``): host = the instance URL (``https://gitlab.com``), password = a
personal/project/group access token; extras ``ca_bundle`` (PEM file trusted instead of the system
store), ``per_page`` (default 100), ``timeout`` (seconds, default 60), ``max_retries`` (default 10).

Both clients obey 429 ``Retry-After`` (``obey_rate_limit``) and retry 5xx
(``retry_transient_errors``) up to ``max_retries`` times.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from ps_integrations.exceptions import GitLabApiError

log = logging.getLogger(__name__)


class GitLabHook(BaseHook):
    """python-gitlab REST and GraphQL clients for one GitLab connection."""

    conn_name_attr = "gitlab_conn_id"
    default_conn_name = "gitlab_default"
    conn_type = "ps_gitlab"
    hook_name = "GitLab (ps-integrations)"

    def __init__(self, gitlab_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gitlab_conn_id = gitlab_conn_id

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
            raise GitLabApiError(0, f"connection {self.gitlab_conn_id!r} has no host (the GitLab URL)")
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

        try:
            return self.graphql.execute(query, variable_values=variables or {})
        except TransportQueryError as error:
            messages = "; ".join(str(item.get("message")) for item in (error.errors or [])) or str(error)
            raise GitLabApiError(200, f"GraphQL errors: {messages}") from None
        except gitlab.exceptions.GitlabError as error:
            raise GitLabApiError(error.response_code or 0, str(error.error_message)) from None

    def graphql_nodes(self, query: str, variables: dict[str, Any], path: list[str]) -> Iterator[dict[str, Any]]:
        """Every node of a GraphQL connection, following ``pageInfo { hasNextPage endCursor }``.

        :param query: a query taking ``$after: String`` and selecting ``nodes`` and
            ``pageInfo { hasNextPage endCursor }`` on the connection.
        :param variables: the other variables.
        :param path: keys from ``data`` to the connection, e.g. ``["group", "timelogs"]``.
        """
        after: str | None = None
        self.graphql_pages = 0
        while True:
            data = self.graphql_query(query, {**variables, "after": after})
            self.graphql_pages += 1
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
