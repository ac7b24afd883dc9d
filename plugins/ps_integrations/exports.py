"""The exports store: files for finance and leadership, on local disk or S3.

Built on Airflow's ``ObjectStoragePath``: ``file://`` under the project by default, ``s3://`` with an
aws connection whose extra carries ``endpoint_url`` when needed (s3fs does the I/O). Every export
folder gets a ``README.md`` data dictionary with one line per column.

Formatting rules shared by every export: UTF-8, ISO 8601 dates, decimals as plain numbers, an
explicit currency column wherever money appears (the caller supplies it as a column).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ps_integrations.exceptions import ExportError
from ps_integrations.paths import DEFAULT_EXPORTS_BASE

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

EXPORTS_BASE_VARIABLE = "ps_exports_base"
EXPORTS_CONN_VARIABLE = "ps_exports_conn_id"


@dataclass(frozen=True)
class Column:
    """One column of an export file and its line in the folder's data dictionary."""

    name: str
    description: str


@dataclass(frozen=True)
class ExportFile:
    """A file to write: its name, bytes, and (for tables) the columns it holds."""

    name: str
    content: bytes
    description: str
    columns: tuple[Column, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def format_value(value: Any) -> str:
    """Render one cell: ISO 8601 dates, plain decimals, ``true``/``false``, empty for None."""
    kind = type(value)
    if kind is str:  # the common cases first: exports are mostly text and decimals
        return value
    if kind is Decimal:
        return format(value, "f")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
            return value.isoformat(timespec="seconds") + "Z"
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


def csv_file(name: str, description: str, columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> ExportFile:
    """A CSV export file (UTF-8, header row, ``\\n`` line ends) from dict rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.name for column in columns])
    for row in rows:
        writer.writerow([format_value(row.get(column.name)) for column in columns])
    return ExportFile(name, buffer.getvalue().encode("utf-8"), description, tuple(columns))


def csv_field(value: str) -> str:
    """One CSV field exactly as :func:`csv_file`'s writer renders it (minimal quoting)."""
    if "," in value or '"' in value or "\n" in value:  # the writer's line terminator is "\n"
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_lines_file(name: str, description: str, columns: Sequence[Column], lines: Iterable[str]) -> ExportFile:
    """A CSV export from rows already joined with :func:`csv_field` (for tables of a million rows)."""
    text = "\n".join([",".join(column.name for column in columns), *lines]) + "\n"
    return ExportFile(name, text.encode("utf-8"), description, tuple(columns))


def json_file(name: str, description: str, data: Any) -> ExportFile:
    """A JSON file with sorted keys, so identical data gives identical bytes."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=format_value)
    return ExportFile(name, (text + "\n").encode("utf-8"), description)


def data_dictionary(title: str, files: Sequence[ExportFile]) -> ExportFile:
    """The folder's README.md: what each file is, and one line per column."""
    lines = [f"# {title}", "", "Files are UTF-8; dates are ISO 8601; money comes with a currency column.", ""]
    for export in files:
        lines.append(f"## {export.name}")
        lines.append("")
        lines.append(export.description)
        if export.columns:
            lines.append("")
            lines.extend(f"- `{column.name}`: {column.description}" for column in export.columns)
        lines.append("")
    return ExportFile("README.md", "\n".join(lines).encode("utf-8"), "Data dictionary of this folder.")


def display_url(path: ObjectStoragePath) -> str:
    """The path as a reader knows it: ``s3://bucket/key`` without the connection id."""
    if path.protocol == "file":
        return f"file://{path.path}"
    return f"{path.protocol}://{path.path}"


class ExportStore:
    """Writes export folders under a base URL.

    :param base_url: ``file:///...`` or ``s3://bucket/prefix``.
    :param conn_id: Airflow connection for the storage (an ``aws`` connection for ``s3://``).
    """

    def __init__(self, base_url: str = DEFAULT_EXPORTS_BASE, conn_id: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.conn_id = conn_id or None

    @classmethod
    def from_variables(cls) -> ExportStore:
        """The store configured by the ``ps_exports_base`` and ``ps_exports_conn_id`` variables."""
        from airflow.sdk import Variable

        base = Variable.get(EXPORTS_BASE_VARIABLE, default=DEFAULT_EXPORTS_BASE)
        conn_id = Variable.get(EXPORTS_CONN_VARIABLE, default=None)
        return cls(base, conn_id)

    def path(self, *parts: str) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        url = "/".join([self.base_url, *(part.strip("/") for part in parts if part)])
        return ObjectStoragePath(url, conn_id=self.conn_id)

    def write_folder(self, folder: str, title: str, files: Sequence[ExportFile]) -> list[str]:
        """Write the files and their README.md into ``folder``, replacing what was there.

        :return: the URLs written, README.md last.
        """
        target = self.path(folder)
        written = []
        try:
            target.mkdir(parents=True, exist_ok=True)
            for export in [*files, data_dictionary(title, files)]:
                destination = target / export.name
                with destination.open("wb") as handle:
                    handle.write(export.content)
                written.append(display_url(destination))
                log.info("Export written: %s (%d bytes)", display_url(destination), len(export.content))
        except OSError as error:
            raise ExportError(f"could not write export folder {display_url(target)}: {error}") from error
        return written

    def read_bytes(self, folder: str, name: str) -> bytes:
        return (self.path(folder) / name).read_bytes()

    def list_folder(self, folder: str) -> list[str]:
        target = self.path(folder)
        if not target.exists():
            return []
        return sorted(child.name for child in target.iterdir())
