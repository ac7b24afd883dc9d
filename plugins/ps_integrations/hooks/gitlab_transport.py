"""What the GitLab hook's operation groups need from its transport (``GitLabHook`` in ``hooks/gitlab.py``).

The operations are split by area (timesheets, repository and merge requests) into mixin classes whose
methods take ``self: GitLabTransport``; ``GitLabHook`` inherits them and mypy checks it fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from ps_integrations.pacing import Pacer

T = TypeVar("T")

# A write whose answer is lost (a proxy's 502/504 or a timeout after GitLab wrote) is not sent again:
# python-gitlab's transient-error retry would open a second issue, note or merge request. The
# error names the endpoint; each job's markers find what was written on its next run. 429s are still
# obeyed (GitLab refused them before doing anything).
WRITE_ONCE: dict[str, Any] = {"retry_transient_errors": False}


class GitLabTransport(Protocol):
    requests_made: int
    _note_pacer: Pacer | None

    @property
    def client(self) -> Any: ...

    def _call(self, endpoint: str, call: Callable[[], T], *, pacer: Pacer | None = None) -> T: ...

    def _pages(self, endpoint: str, list_page: Callable[..., Any], **filters: Any) -> Iterator[dict[str, Any]]: ...

    def _project(self, project: str) -> Any: ...

    def graphql_query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def graphql_nodes(self, query: str, variables: dict[str, Any], path: list[str]) -> Iterator[dict[str, Any]]: ...
