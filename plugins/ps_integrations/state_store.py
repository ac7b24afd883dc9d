"""The state store: a SQL database reached through an Airflow connection.

SQLite by default, PostgreSQL in docker-compose and CI. SQL lives in ``include/sql/`` and is written
once for both (named ``:param`` binds, ``INSERT ... ON CONFLICT``). The schema is applied from the
numbered files in ``include/sql/schema/``; each applied file is recorded in ``schema_migrations``,
so applying is idempotent and safe when several tasks start at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ps_integrations import clock
from ps_integrations.exceptions import StateStoreError
from ps_integrations.paths import SCHEMA_DIR, SQL_DIR

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "ps_state"
# Arbitrary constant naming the advisory lock that serialises schema changes on PostgreSQL.
SCHEMA_LOCK_KEY = 7_241_315

MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""


@lru_cache(maxsize=256)
def _named_statements(name: str) -> tuple[str, ...]:
    """The statements of ``include/sql/<name>.sql``, parsed once per process (sqlparse is slow)."""
    return tuple(split_statements(StateStore.load_sql(name)))


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (sqlparse knows about quotes and comments)."""
    import sqlparse

    statements = []
    for statement in sqlparse.split(script):
        body = sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip()
        if body:
            statements.append(body)
    return statements


def schema_files(schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Numbered schema files (``001_platform.sql``...) in the order they are applied."""
    files = sorted(schema_dir.glob("[0-9][0-9][0-9]_*.sql"))
    versions = [path.name.split("_", 1)[0] for path in files]
    if len(set(versions)) != len(versions):
        raise StateStoreError(f"duplicate schema version numbers in {schema_dir}: {versions}")
    return files


class StateStore:
    """Thin access layer over the state database.

    :param conn_id: Airflow connection of the database (``sqlite`` or ``postgres`` type).
    :param engine: an SQLAlchemy engine to use instead of the connection (tests, tools).
    """

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, engine: Engine | None = None):
        self.conn_id = conn_id
        self._engine = engine

    @cached_property
    def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        from airflow.sdk import BaseHook

        try:
            connection = BaseHook.get_connection(self.conn_id)
            hook = connection.get_hook()
        except Exception as error:
            raise StateStoreError(
                f"state store connection {self.conn_id!r} is not usable: {error}. "
                "Define it as an Airflow connection (sqlite or postgres)."
            ) from error
        return hook.get_sqlalchemy_engine()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    # --- schema -----------------------------------------------------------------------------
    def apply_schema(self, schema_dir: Path = SCHEMA_DIR) -> list[str]:
        """Apply every schema file not applied yet; return the versions applied now.

        Safe when several tasks start at once: each file is claimed by inserting its version first
        (the insert takes SQLite's write lock; the loser's insert does nothing), in the transaction
        that applies it. PostgreSQL also races on concurrent ``CREATE TABLE IF NOT EXISTS`` in its
        catalog, so there an advisory lock serialises the whole step.
        """
        from sqlalchemy import text

        with self.transaction() as connection:
            self._lock_schema(connection)
            connection.execute(text(MIGRATIONS_DDL))
        applied_now = []
        for path in schema_files(schema_dir):
            version = path.stem
            with self.transaction() as connection:
                self._lock_schema(connection)
                claim = connection.execute(
                    text(
                        "INSERT INTO schema_migrations (version, applied_at) "
                        "VALUES (:version, CURRENT_TIMESTAMP) ON CONFLICT (version) DO NOTHING"
                    ),
                    {"version": version},
                )
                if claim.rowcount != 1:
                    continue
                for statement in split_statements(path.read_text(encoding="utf-8")):
                    connection.execute(text(statement))
            applied_now.append(version)
            log.info("State store %s: applied schema %s", self.conn_id, version)
        return applied_now

    def _lock_schema(self, connection: Connection) -> None:
        from sqlalchemy import text

        if self.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})

    # --- queries ----------------------------------------------------------------------------
    @staticmethod
    def load_sql(name: str) -> str:
        """The text of ``include/sql/<name>.sql`` (e.g. ``platform/record_run``)."""
        path = SQL_DIR / f"{name}.sql"
        if not path.is_file():
            raise StateStoreError(f"no SQL file {path}")
        return path.read_text(encoding="utf-8")

    def execute(
        self,
        name: str,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        connection: Connection | None = None,
    ) -> int:
        """Run the named SQL file (every statement in it); return the rows affected."""
        from sqlalchemy import text

        statements = list(_named_statements(name))
        if connection is None:
            with self.transaction() as own:
                return self._execute(own, statements, params, text)
        return self._execute(connection, statements, params, text)

    @staticmethod
    def _execute(connection: Connection, statements: list[str], params: Any, text: Any) -> int:
        affected = 0
        for statement in statements:
            result = connection.execute(text(statement), params if params is not None else {})
            affected += max(result.rowcount or 0, 0)
        return affected

    def fetch_all(
        self, name: str, params: Mapping[str, Any] | None = None, connection: Connection | None = None
    ) -> list[dict[str, Any]]:
        """Rows of the named single-statement SQL file, as dicts."""
        from sqlalchemy import text

        sql = _named_statements(name)[0]
        if connection is None:
            with self.transaction() as own:
                return [dict(row._mapping) for row in own.execute(text(sql), params or {})]
        return [dict(row._mapping) for row in connection.execute(text(sql), params or {})]

    def fetch_one(
        self, name: str, params: Mapping[str, Any] | None = None, connection: Connection | None = None
    ) -> dict[str, Any] | None:
        rows = self.fetch_all(name, params, connection)
        return rows[0] if rows else None

    def get_value(self, job: str, name: str) -> str | None:
        """A job's small persistent value (an issue iid, the digest of the last mail)."""
        row = self.fetch_one("platform/get_value", {"job": job, "name": name})
        return row["value"] if row else None

    def set_value(self, job: str, name: str, value: str) -> None:

        self.execute(
            "platform/set_value",
            {"job": job, "name": name, "value": value, "updated_at": clock.now_iso()},
        )

    def table_names(self) -> list[str]:
        from sqlalchemy import inspect

        return sorted(inspect(self.engine).get_table_names())
