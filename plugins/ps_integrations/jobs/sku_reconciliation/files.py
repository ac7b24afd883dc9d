"""Step 4: the export files (CSV and XLSX with the same rows, the manifest), written for finance."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, overload

from ps_integrations.domain.price_book import SALESFORCE_GLOSSARY, SALESFORCE_KEYS, SALESFORCE_NO_ACTION, PriceBookRow
from ps_integrations.domain.price_book import needs_any_action as needs_action
from ps_integrations.domain.sku_reconciliation import GLOSSARY, NO_ACTION, Row, money, status_counts
from ps_integrations.exports import Column, ExportFile, json_file
from ps_integrations.jobs.sku_reconciliation.sources import CatalogSource, Sources
from ps_integrations.xlsx import Money, Sheet, workbook_bytes

# mail servers commonly refuse messages over 10-25 MB, and base64 adds a third
MAX_ATTACHMENT_BYTES = 7_000_000


@dataclass(frozen=True)
class Field:
    """One column of the export: the row key, the header a finance reader sees, what it holds, its kind."""

    key: str
    header: str
    description: str
    kind: str = "text"  # text | money | int | date


FIELDS = (
    Field("sku", "SKU", "Product code, exactly as written (Zuora's spelling when the row has a Zuora product)"),
    Field("currency", "Currency", "ISO 4217 currency of the prices on this row (empty when no side states one)"),
    Field("status", "Status", "The most severe problem of the row; see the glossary on the Summary sheet"),
    Field("action", "Action", "What to change in which system (Zuora is upstream: services.yml follows Zuora)"),
    Field("services_yml_price", "services.yml price", "services.yml price in this currency, exact", "money"),
    Field("zuora_price", "Zuora price", "Zuora first-tier price of the active rate plan in this currency", "money"),
    Field("difference", "Difference (services.yml minus Zuora)", "services.yml price minus Zuora price", "money"),
    Field("details", "Details", "The specifics: SKU spellings quoted with where each comes from, record ids, lines"),
    Field("problems", "All problems", "Every problem of the row, most severe first, separated by '; '"),
    Field("services_yml_id", "services.yml id", "services.yml entry id"),
    Field("services_yml_name", "services.yml name", "services.yml entry name"),
    Field("services_yml_category", "services.yml category", "services.yml entry category"),
    Field("services_yml_line", "services.yml line", "Line of the entry in services.yml", "int"),
    Field("zuora_product_id", "Zuora product id", "Zuora Product Id"),
    Field("zuora_name", "Zuora product name", "Zuora Product Name"),
    Field("zuora_effective_start", "Zuora start date", "Zuora product EffectiveStartDate", "date"),
    Field("zuora_effective_end", "Zuora end date", "Zuora product EffectiveEndDate", "date"),
    Field("zuora_rate_plan_id", "Zuora rate plan id", "Zuora rate plan of the Zuora price shown"),
    Field("zuora_rate_plans", "Zuora rate plans", "Number of rate plans of the Zuora product (any date)", "int"),
    # issue #19: Salesforce's side (empty when Salesforce is not read)
    Field("salesforce_status", "Salesforce status", "Salesforce against Zuora; see the glossary on the Summary sheet"),
    Field("salesforce_action", "Salesforce action", "What to change in Salesforce (its price book follows Zuora)"),
    Field(
        "salesforce_sellable",
        "Sellable in Salesforce",
        "yes: active product, active entry in the price book in this currency, active price book; no: not sellable",
    ),
    Field("salesforce_price", "Salesforce price", "UnitPrice of the price book entry in this currency", "money"),
    Field("salesforce_price_book", "Salesforce price book", "The price book of the entry (the PS one when set)"),
    Field("salesforce_product_id", "Salesforce product id", "Product2 Id"),
    Field("sku_process_step", "Missing SKU-process step", "The step of the PS handbook's SKU process that is missing"),
    Field("salesforce_details", "Salesforce details", "Why it is not sellable, duplicate product codes, ended dates"),
)
COLUMNS = tuple(Column(f.header, f.description) for f in FIELDS)
MONEY_KEYS = tuple(f.key for f in FIELDS if f.kind == "money")


_SALESFORCE_KEYS = frozenset(SALESFORCE_KEYS)


def _value(row: Row, field: Field) -> Any:
    """The row's value for the column; None for Salesforce's columns of a row without its side."""
    if field.key in _SALESFORCE_KEYS and not isinstance(row, PriceBookRow):
        return None
    return row[field.key]


# a text cell starting with one of these is run as a formula when Excel opens the CSV
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(row: Row, field: Field) -> str:
    value = _value(row, field)
    if value is None:
        return ""
    if field.kind == "money":
        return money(value)
    text = str(value)
    if field.kind == "text" and text.startswith(_FORMULA_START):
        return "'" + text  # shown as text, never run (names and SKUs come from two other systems)
    return text


def reconciliation_csv(rows: Sequence[Row]) -> ExportFile:
    """UTF-8 with a byte order mark (so Excel reads the SKUs' and names' accents right), plain decimals."""
    buffer = io.BytesIO()
    # encoded as written: the text is never held as one (UCS-2, because of the BOM) string
    text = io.TextIOWrapper(buffer, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([f.header for f in FIELDS])
    writer.writerows([_csv_cell(row, f) for f in FIELDS] for row in rows)
    text.flush()
    content = buffer.getvalue()
    text.detach()
    return ExportFile(
        "reconciliation.csv",
        content,
        "One row per SKU, currency, services.yml entry and Zuora product (services.yml entries without a SKU: one "
        "row per entry), most severe status first, then by SKU. UTF-8 with a byte order mark, CRLF line ends, "
        "prices as plain decimals with a point; a text cell starting with = + - or @ gets a leading ' so Excel "
        "shows it instead of running it.",
        COLUMNS,
    )


def _sheet_cell(row: Row, field: Field) -> Any:
    value = _value(row, field)
    if value is None or value == "":
        return None
    if field.kind == "money":
        return Money(value, row["currency"])
    if field.kind == "date":
        return date.fromisoformat(value)
    return value


class SheetRows(Sequence[list[Any]]):
    """The workbook cells of export rows, made as the sheet is written (not all held at once)."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> list[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[Any]]: ...
    def __getitem__(self, index: int | slice) -> list[Any] | list[list[Any]]:
        if isinstance(index, slice):
            return [self._cells(row) for row in self.rows[index]]
        return self._cells(self.rows[index])

    def __iter__(self) -> Iterator[list[Any]]:
        return map(self._cells, self.rows)

    @staticmethod
    def _cells(row: Row) -> list[Any]:
        return [_sheet_cell(row, f) for f in FIELDS]


def summary_sheet(
    as_of: date, rows: Sequence[Row], counts: dict[str, int], sources: Sources, dup_ids: list[str]
) -> Sheet:
    lines: list[list[Any]] = [
        ["As of", as_of],
        ["Rows", len(rows)],
        ["Rows needing action", sum(1 for row in rows if needs_action(row))],
        *[[label, value] for label, value in sources.lines()],
        ["services.yml ids used more than once", "; ".join(dup_ids) or "no id is used twice"],
        ["Rule", "Zuora is upstream: services.yml follows Zuora; a SKU missing in Zuora needs a finance SKU request"],
        [],
    ]
    bold = {len(lines) + 1}
    lines.append(["Status", "Rows", "Needs action", "Meaning"])
    lines += [
        [status, count, "no" if status in NO_ACTION else "yes", GLOSSARY[status]] for status, count in counts.items()
    ]
    salesforce = {row["salesforce_status"] for row in rows if getattr(row, "salesforce_status", "")}
    if salesforce:
        lines.append([])
        bold.add(len(lines) + 1)
        lines.append(["Salesforce status", "Rows", "Needs action", "Meaning"])
        lines += [
            [
                status,
                sum(1 for row in rows if row["salesforce_status"] == status),
                "no" if status in SALESFORCE_NO_ACTION else "yes",
                meaning,
            ]
            for status, meaning in SALESFORCE_GLOSSARY.items()
        ]
    lines.append([])
    bold.add(len(lines) + 1)
    lines.append(["Column", "Meaning"])
    lines += [[f.header, f.description] for f in FIELDS]
    return Sheet(
        "Summary", ["SKU reconciliation", ""], lines, table=False, bold_rows=frozenset(bold), widths=[36, 16, 12, 90]
    )


def reconciliation_xlsx(
    as_of: date, rows: Sequence[Row], counts: dict[str, int], sources: Sources, dup_ids: list[str]
) -> ExportFile:
    header = [f.header for f in FIELDS]
    sheets = [
        summary_sheet(as_of, rows, counts, sources, dup_ids),
        Sheet("Needs action", header, SheetRows([row for row in rows if needs_action(row)])),
        Sheet("All rows", header, SheetRows(rows)),
    ]
    moment = datetime.combine(as_of, time(0), UTC).replace(tzinfo=None)
    return ExportFile(
        "reconciliation.xlsx",
        workbook_bytes(sheets, moment, f"SKU reconciliation {as_of.isoformat()}"),
        "The same rows as reconciliation.csv. Summary sheet: as_of, sources, rows per status and a glossary; "
        "'Needs action' and 'All rows' sheets with prices as numbers in their currency's format, sorted by "
        "severity then SKU, header frozen and filterable.",
        COLUMNS,
    )


def build_files(
    rows: list[Row], as_of: date, sources: Sources | None = None, dup_ids: list[str] | None = None
) -> list[ExportFile]:
    counts = status_counts(rows)
    sources = sources or Sources("", {}, CatalogSource("", "", None, None, None))
    return [reconciliation_csv(rows), reconciliation_xlsx(as_of, rows, counts, sources, dup_ids or [])]


def attachable(files: Sequence[ExportFile], limit: int = MAX_ATTACHMENT_BYTES) -> list[ExportFile]:
    """The files to attach to the finance mail: the workbook first, then the CSV, while they fit."""
    chosen, total = [], 0
    for export in sorted(files, key=lambda f: not f.name.endswith(".xlsx")):
        if total + len(export.content) <= limit:
            chosen.append(export)
            total += len(export.content)
    return chosen


def manifest_file(
    as_of: date,
    rows: Sequence[Row],
    counts: dict[str, int],
    files: Sequence[ExportFile],
    sources: Sources,
    fetched_at: datetime,
    invalid_entries: list[str],
    dup_ids: list[str],
) -> ExportFile:
    source = sources.services_yml
    return json_file(
        "manifest.json",
        "What this export was built from: row counts, sha256 of each data file, the services.yml ref "
        "and blob id, the Zuora endpoint, when the inputs were fetched.",
        {
            "as_of": as_of.isoformat(),
            "rows": len(rows),
            "rows_by_status": counts,
            "files": {export.name: {"sha256": export.sha256, "bytes": len(export.content)} for export in files},
            "services_yml": {
                "source": source.source,
                "project": source.project,
                "path": source.path,
                "ref": source.ref,
                "blob_id": source.blob_id,
                "commit_id": source.commit_id,
            },
            "zuora_endpoint": sources.zuora_endpoint,
            "zuora_records": sources.zuora_records,
            "inputs_fetched_at": fetched_at.astimezone(UTC).isoformat(timespec="seconds"),
            "invalid_services_yml_entries": invalid_entries,
            "duplicated_services_yml_ids": dup_ids,
        },
    )
