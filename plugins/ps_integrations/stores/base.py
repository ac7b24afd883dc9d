"""What every repository in ``stores/`` stands on: the state store's named-SQL interface and the
audit log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ps_integrations import clock


class SqlStore(Protocol):
    """The state store's named-SQL interface (``ps_integrations.state_store.StateStore``)."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def execute(
        self,
        name: str,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        connection: Any = None,
    ) -> int: ...

    def fetch_all(
        self, name: str, params: Mapping[str, Any] | None = None, connection: Any = None
    ) -> list[dict[str, Any]]: ...


def record_audit(store: SqlStore, dag_id: str, run_id: str, record_id: str, action: str, detail: str) -> None:
    """One line of the audit log (one per record, action and run: a retry overwrites its detail)."""
    store.execute(
        "platform/record_audit",
        {
            "dag_id": dag_id,
            "run_id": run_id,
            "record_id": record_id,
            "action": action,
            "detail": detail,
            "recorded_at": clock.now_iso(),
        },
    )
