"""The SKU reconciliation job: Zuora catalog vs services.yml, exported for finance.

Reads the four Zuora catalog objects (ZOQL has no joins: one query each, joined in the domain) and
services.yml (from its GitLab repository at a ref, recording the blob id, or from a local file),
reconciles them (``domain.sku_reconciliation``), writes the export folder, records the problems
to report drift against the previous ``as_of``, keeps one GitLab issue in the finance project
current and mails finance what needs doing (also when services.yml cannot be read at all).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any, overload

from ps_integrations import clock
from ps_integrations.domain.gitlab_text import one_line
from ps_integrations.domain.services_catalog import Catalog, CatalogSyntaxError, parse_services_yml
from ps_integrations.domain.sku_reconciliation import (
    GLOSSARY,
    NO_ACTION,
    Row,
    join_zuora_catalog,
    money,
    needs_action,
    problem_keys,
    reconcile,
    status_counts,
)
from ps_integrations.exceptions import GitLabApiError
from ps_integrations.exports import Column, ExportFile, ExportStore, json_file
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.xlsx import Money, Sheet, workbook_bytes

log = logging.getLogger(__name__)

JOB = "ps_sku_reconciliation"
ZOQL = {
    "Product": "select Id, Name, SKU, Category, EffectiveStartDate, EffectiveEndDate from Product",
    "ProductRatePlan": "select Id, Name, ProductId, EffectiveStartDate, EffectiveEndDate from ProductRatePlan",
    "ProductRatePlanCharge": "select Id, Name, ProductRatePlanId from ProductRatePlanCharge",
    "ProductRatePlanChargeTier": (
        "select Id, ProductRatePlanChargeId, Currency, Price, Tier from ProductRatePlanChargeTier"
    ),
}
ISSUE_MARKER = "<!-- ps-integrations:sku-reconciliation -->"
ISSUE_TABLE_LIMIT = 500  # rows in the issue; the rest are in the export (GitLab caps descriptions at 1 MB)
MAIL_LIST_LIMIT = 200
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
)
COLUMNS = tuple(Column(f.header, f.description) for f in FIELDS)
MONEY_KEYS = tuple(f.key for f in FIELDS if f.kind == "money")


@dataclass(frozen=True)
class ReconciliationConfig:
    services_yml_project: str = "professional-services/services-catalog"
    services_yml_path: str = "data/services.yml"
    services_yml_ref: str = "main"
    services_yml_local_path: str | None = None
    finance_project: str = "professional-services/finance"
    finance_recipients: str = "finance@example.com"
    zuora_batch_size: int = 2000
    # where finance opens the export folder in a browser; "{folder}" is replaced, e.g.
    # "https://s3.console.aws.amazon.com/s3/buckets/ps-exports?prefix=finance/{folder}/"
    exports_browse_url: str = ""

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ReconciliationConfig:
        from ps_integrations.settings import settings_from_mapping

        return settings_from_mapping(cls, data, "ps_sku_reconciliation_config")


@dataclass(frozen=True)
class CatalogSource:
    text: str
    source: str
    ref: str | None
    blob_id: str | None
    commit_id: str | None
    project: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Sources:
    """Where the data came from, as the summary sheet, issue and mail state it."""

    zuora_endpoint: str
    zuora_records: dict[str, int]
    services_yml: CatalogSource

    def lines(self) -> list[tuple[str, str]]:
        catalog = self.services_yml
        return [
            ("Zuora endpoint", self.zuora_endpoint),
            ("Zuora records read", ", ".join(f"{name} {count}" for name, count in self.zuora_records.items())),
            ("services.yml project", catalog.project or "(local file)"),
            ("services.yml path", catalog.path or catalog.source),
            ("services.yml ref", catalog.ref or ""),
            ("services.yml blob id", catalog.blob_id or ""),
            ("services.yml commit id", catalog.commit_id or ""),
        ]


@dataclass(frozen=True)
class Outcome:
    """What one reconciliation found, for the finance mail and issue."""

    as_of: date
    rows: list[Row]
    counts: dict[str, int]
    folder: str
    new: list[tuple[str, str, str]]
    resolved: list[tuple[str, str, str]]
    duplicated_ids: list[str]
    sources: Sources

    @property
    def action_rows(self) -> list[Row]:
        return [row for row in self.rows if needs_action(row)]


def fetch_services_yml(gitlab_hook: Any, config: ReconciliationConfig, ref: str | None) -> CatalogSource:
    if config.services_yml_local_path:
        with open(config.services_yml_local_path, encoding="utf-8") as handle:
            text = handle.read()
        blob = hashlib.sha1(b"blob %d\x00" % len(text.encode()) + text.encode(), usedforsecurity=False).hexdigest()
        return CatalogSource(text, config.services_yml_local_path, None, blob, None)
    import gitlab.exceptions

    wanted = ref or config.services_yml_ref
    try:
        project = gitlab_hook.client.projects.get(config.services_yml_project, lazy=True)
        found = project.files.get(file_path=config.services_yml_path, ref=wanted)
    except gitlab.exceptions.GitlabError as error:
        raise GitLabApiError(
            error.response_code or 0,
            f"GET /projects/{config.services_yml_project}/repository/files",
            f"cannot read {config.services_yml_path} at {wanted} in {config.services_yml_project}: "
            f"{error.error_message}",
        ) from None
    source = f"{config.services_yml_project}/{config.services_yml_path}@{wanted}"
    return CatalogSource(
        found.decode().decode("utf-8"),
        source,
        wanted,
        found.blob_id,
        found.commit_id,
        config.services_yml_project,
        config.services_yml_path,
    )


def fetch_zuora(zuora: Any, batch_size: int) -> dict[str, list[dict[str, Any]]]:
    return {name: list(zuora.query(zoql, batch_size=batch_size)) for name, zoql in ZOQL.items()}


def duplicated_ids(catalog: Catalog) -> list[str]:
    """services.yml ids used by more than one entry, each with the lines of every use."""
    lines: dict[str, list[str]] = {}
    for entry in sorted(catalog.entries, key=lambda e: e.line or 0):
        place = f"line {entry.line}" + (f" (alias of line {entry.alias_of_line})" if entry.alias_of_line else "")
        lines.setdefault(entry.id, []).append(place)
    return [f"{key} ({', '.join(places)})" for key, places in sorted(lines.items()) if len(places) > 1]


# --- files -------------------------------------------------------------------------------------------


# a text cell starting with one of these is run as a formula when Excel opens the CSV
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(row: Row, field: Field) -> str:
    value = row[field.key]
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
    value = row[field.key]
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


# --- GitLab Markdown -------------------------------------------------------------------------------

# What makes GitLab format, link, mention or reference text, or break a table cell. Plain numbers and
# SKUs ("GL-ENGR-12", "7000.00", "MIG+") and ids like "training_sessions_pm" stay as they are:
_ALWAYS = set("\\`*[]<>|{}")
# reference and mention sigils act only when text follows them directly (#1, @all, ~label, :emoji:)
_BEFORE_TEXT = set("@#!~%&$:^")


def table_cell(text: Any, limit: int = 300) -> str:
    """One GitLab Markdown table cell that shows the text as it is and does nothing else."""
    value = one_line("" if text is None else str(text), limit)
    out = []
    for position, char in enumerate(value):
        after = value[position + 1 : position + 2]
        before = value[position - 1 : position] if position else ""
        if (
            char in _ALWAYS
            or (char in _BEFORE_TEXT and after.strip())
            or (char == "_" and not (before.isalnum() and after.isalnum()))  # intraword _ never emphasises
        ):
            out.append("\\")
        out.append(char)
    return "".join(out) or " "


class SkuReconciliation:
    def __init__(
        self,
        zuora: Any,
        gitlab: Any,
        store: Any,
        exports: ExportStore,
        config: ReconciliationConfig,
        run_id: str,
        send: Callable[[EmailMessage], None] | None = None,
    ) -> None:
        self.zuora, self.gitlab, self.store, self.exports = zuora, gitlab, store, exports
        self.config = config
        self.run_id = run_id
        self.send = send
        self.summary = RunSummary(counts={})

    def run(self, as_of: date, ref: str | None, fetched_at: datetime) -> RunSummary:
        source = fetch_services_yml(self.gitlab, self.config, ref)
        try:
            catalog = parse_services_yml(source.text, source.source)
        except CatalogSyntaxError as error:
            self._mail_cannot_reconcile(as_of, source, error)
            raise  # fix the file; nothing was reconciled
        zuora = fetch_zuora(self.zuora, self.config.zuora_batch_size)
        products = join_zuora_catalog(
            zuora["Product"],
            zuora["ProductRatePlan"],
            zuora["ProductRatePlanCharge"],
            zuora["ProductRatePlanChargeTier"],
            as_of,
        )
        rows = reconcile(list(catalog.entries), products, as_of, catalog.invalid)
        counts = status_counts(rows)
        sources = Sources(
            str(getattr(self.zuora, "endpoint", "") or ""), {name: len(items) for name, items in zuora.items()}, source
        )
        self.summary.add("read", len(catalog.entries) + len(zuora["Product"]))
        self.summary.add("rows", len(rows))
        for status, count in counts.items():
            if count:
                self.summary.add(status, count)
        for entry in catalog.invalid:
            self.summary.fail(
                RecordFailure(
                    "services.yml",
                    f"entry {entry.entry_id}",
                    entry.reason,
                    f"line {entry.line}" if entry.line else None,
                )
            )
        dup_ids = duplicated_ids(catalog)
        if dup_ids:
            self.summary.note(f"services.yml ids used by more than one entry: {'; '.join(dup_ids)}")

        folder = f"sku_reconciliation/{as_of.isoformat()}"
        files = build_files(rows, as_of, sources, dup_ids)
        manifest = json_file(
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
                "invalid_services_yml_entries": [entry.describe() for entry in catalog.invalid],
                "duplicated_services_yml_ids": dup_ids,
            },
        )
        self.exports.write_folder(folder, f"SKU reconciliation as of {as_of.isoformat()}", [*files, manifest])
        self.summary.note(f"export: {folder}")

        new, resolved = self._record_and_compare(as_of, rows, source, counts, folder)
        self.summary.note(f"since the previous as_of: {len(new)} new problem(s), {len(resolved)} resolved")
        outcome = Outcome(as_of, rows, counts, folder, new, resolved, dup_ids, sources)
        issue_url = self._finance_issue(outcome)
        self._mail_finance(outcome, files, issue_url)
        return self.summary

    # --- drift ------------------------------------------------------------------------------------
    def _record_and_compare(
        self, as_of: date, rows: list[Row], source: CatalogSource, counts: dict[str, int], folder: str
    ) -> tuple[list, list]:
        keys = problem_keys(rows)
        previous_rows = self.store.fetch_all("sku_reconciliation/previous_problems", {"as_of": as_of.isoformat()})
        previous = {(row["item"], row["currency"], row["problem"]) for row in previous_rows}
        had_previous = self._has_earlier_run(as_of)
        with self.store.transaction() as connection:
            self.store.execute("sku_reconciliation/clear_problems", {"as_of": as_of.isoformat()}, connection)
            if keys:
                self.store.execute(
                    "sku_reconciliation/insert_problem",
                    [
                        {"as_of": as_of.isoformat(), "item": item, "currency": currency, "problem": problem}
                        for item, currency, problem in sorted(keys)
                    ],
                    connection,
                )
            self.store.execute(
                "sku_reconciliation/record_run",
                {
                    "as_of": as_of.isoformat(),
                    "services_yml_ref": source.ref,
                    "services_yml_blob_id": source.blob_id,
                    "counts_json": json.dumps(counts, sort_keys=True),
                    "export_folder": folder,
                    "run_id": self.run_id,
                    "updated_at": clock.now_iso(),
                },
                connection,
            )
        if not had_previous:
            return sorted(keys), []
        return sorted(keys - previous), sorted(previous - keys)

    def _has_earlier_run(self, as_of: date) -> bool:
        return self.store.fetch_one("sku_reconciliation/earlier_run", {"as_of": as_of.isoformat()}) is not None

    # --- telling finance ----------------------------------------------------------------------------
    def _where_exports_are(self, folder: str) -> str:
        if self.config.exports_browse_url:
            return self.config.exports_browse_url.replace("{folder}", folder)
        return ""

    def _issue_body(self, outcome: Outcome) -> str:
        as_of, counts, action_rows = outcome.as_of, outcome.counts, outcome.action_rows
        lines = [
            f"## SKU reconciliation as of {as_of.isoformat()}",
            "",
            "Zuora's product catalog does not match services.yml. This issue is kept current by the "
            "`ps_sku_reconciliation` job and closed when nothing needs action. Zuora is upstream: services.yml "
            "follows Zuora; a SKU missing in Zuora needs a finance SKU request.",
            "",
            "| Status | Rows | Meaning |",
            "|---|---:|---|",
            *[
                f"| {status} | {count} | {table_cell(GLOSSARY[status])} |"
                for status, count in counts.items()
                if count and status not in NO_ACTION
            ],
            "",
            f"New since the previous run: {len(outcome.new)}; resolved: {len(outcome.resolved)}.",
            "",
        ]
        if outcome.duplicated_ids:
            lines += [
                "**services.yml ids used by more than one entry:** "
                + "; ".join(table_cell(item) for item in outcome.duplicated_ids),
                "",
            ]
        lines += [
            "| SKU | Currency | Status | Action | services.yml price | Zuora price | Difference "
            "| services.yml id | services.yml name | Zuora product id | Zuora name |",
            "|---|---|---|---|---:|---:|---:|---|---|---|---|",
        ]
        for row in action_rows[:ISSUE_TABLE_LIMIT]:
            cells = [
                row["sku"],
                row["currency"],
                row["status"],
                row["action"],
                money(row["services_yml_price"]),
                money(row["zuora_price"]),
                money(row["difference"]),
                row["services_yml_id"],
                row["services_yml_name"],
                row["zuora_product_id"],
                row["zuora_name"],
            ]
            lines.append("| " + " | ".join(table_cell(cell) for cell in cells) + " |")
        if len(action_rows) > ISSUE_TABLE_LIMIT:
            lines += ["", f"... and {len(action_rows) - ISSUE_TABLE_LIMIT} more rows in the export."]
        browse = self._where_exports_are(outcome.folder)
        lines += [
            "",
            f"Export: `{outcome.folder}/` in the exports store (reconciliation.xlsx, reconciliation.csv)"
            + (f", open it at {browse}" if browse else "")
            + "; finance also gets both files by mail.",
            "",
            ISSUE_MARKER,
        ]
        return "\n".join(lines)

    def _finance_issue(self, outcome: Outcome) -> str | None:
        """Open, update, close or reopen the one finance issue; returns its URL while it is open."""
        as_of = outcome.as_of
        import gitlab.exceptions

        try:
            project = self.gitlab.client.projects.get(self.config.finance_project, lazy=True)
            iid = self.store.get_value(JOB, "finance_issue_iid")
            issue = None
            if iid:
                try:
                    issue = project.issues.get(int(iid))
                except gitlab.exceptions.GitlabGetError:
                    issue = None  # deleted or moved: look it up by its marker instead
            if issue is None:
                found = [
                    i
                    for i in project.issues.list(
                        search="ps-integrations:sku-reconciliation", state="all", get_all=True, **{"in": "description"}
                    )
                    if ISSUE_MARKER in (i.description or "")
                ]
                issue = sorted(found, key=lambda i: i.iid)[0] if found else None
            if outcome.action_rows:
                body = self._issue_body(outcome)
                title = f"SKU reconciliation: {len(outcome.action_rows)} row(s) need action in Zuora or services.yml"
                if issue is None:
                    issue = project.issues.create(
                        {"title": title, "description": body, "labels": "finance,sku-reconciliation"}
                    )
                    self.summary.note(f"finance issue #{issue.iid} opened")
                else:
                    reopened = issue.state == "closed"
                    if reopened or issue.description != body or issue.title != title:
                        project.issues.update(
                            issue.iid,
                            {"title": title, "description": body, **({"state_event": "reopen"} if reopened else {})},
                        )
                        if reopened:
                            issue.notes.create({"body": f"Drift is back as of {as_of.isoformat()}: reopened."})
                        self.summary.note(f"finance issue #{issue.iid} {'reopened' if reopened else 'updated'}")
                    else:
                        self.summary.note(f"finance issue #{issue.iid} unchanged")
                self.store.set_value(JOB, "finance_issue_iid", str(issue.iid))
                return str(getattr(issue, "web_url", "") or "") or None
            if issue is not None and issue.state != "closed":
                issue.notes.create({"body": f"Everything is reconciled as of {as_of.isoformat()}. Closing."})
                project.issues.update(issue.iid, {"state_event": "close"})
                self.summary.note(f"finance issue #{issue.iid} closed: all reconciled")
        except gitlab.exceptions.GitlabError as error:
            self.summary.fail(
                RecordFailure("GitLab", f"finance issue in {self.config.finance_project}", str(error.error_message))
            )
        return None

    def _send(self, message: EmailMessage) -> None:
        if self.send is not None:
            self.send(message)
            return
        from ps_integrations.mail import send_message

        send_message(message)

    def _mail_finance(self, outcome: Outcome, files: list[ExportFile], issue_url: str | None) -> None:
        as_of, counts = outcome.as_of, outcome.counts
        action_rows = outcome.action_rows
        browse = self._where_exports_are(outcome.folder)
        content = json.dumps(
            {
                "counts": counts,
                "files": [f.sha256 for f in files],
                "new": outcome.new,
                "resolved": outcome.resolved,
                "issue": issue_url,
                "browse": browse,
            },
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(content.encode()).hexdigest()
        key = f"mail:{as_of.isoformat()}"
        if self.store.get_value(JOB, key) == digest:
            self.summary.note("finance mail already sent for this export")
            return
        shown = action_rows[:MAIL_LIST_LIMIT]
        more = len(action_rows) - len(shown)
        attached = attachable(files)
        attached_text = (
            f"The files are attached ({', '.join(f.name for f in attached)})"
            if attached
            else "The files are too large to attach"
        )
        where = (
            f"{attached_text} and stored as {outcome.folder}/ in the exports store"
            + (f": {browse}" if browse else "")
            + "."
        )
        issue_line = f"Finance issue: {issue_url}" if issue_url else "No finance issue is open: nothing needs action."
        text_lines = [
            f"SKU reconciliation as of {as_of.isoformat()}: {len(action_rows)} row(s) need action "
            f"({len(outcome.new)} new problem(s) since the previous run, {len(outcome.resolved)} resolved).",
            "Zuora is upstream: services.yml follows Zuora; a SKU missing in Zuora needs a finance SKU request.",
            "",
            *[f"- {row['sku'] or row['services_yml_id']} {row['currency']}: {row['action']}" for row in shown],
            *([f"- ... and {more} more in the attached workbook"] if more else []),
            "",
            *(
                ["services.yml ids used by more than one entry: " + "; ".join(outcome.duplicated_ids), ""]
                if outcome.duplicated_ids
                else []
            ),
            "Rows by status: " + ", ".join(f"{status} {count}" for status, count in counts.items() if count),
            "",
            issue_line,
            where,
        ]
        escape = html.escape
        items = "".join(
            f"<tr><td>{escape(row['sku'] or row['services_yml_id'])}</td><td>{escape(row['currency'])}</td>"
            f"<td>{escape(row['status'])}</td><td>{escape(row['action'])}</td></tr>"
            for row in shown
        )
        status_rows = "".join(
            f"<tr><td>{escape(status)}</td><td align='right'>{count}</td><td>{escape(GLOSSARY[status])}</td></tr>"
            for status, count in counts.items()
            if count
        )
        issue_html = (
            f"<p>Finance issue: <a href='{escape(issue_url, quote=True)}'>{escape(issue_url)}</a></p>"
            if issue_url
            else "<p>No finance issue is open: nothing needs action.</p>"
        )
        browse_html = f": <a href='{escape(browse, quote=True)}'>{escape(browse)}</a>" if browse else ""
        body_html = (
            f"<p>SKU reconciliation as of <b>{as_of.isoformat()}</b>: <b>{len(action_rows)}</b> row(s) need action "
            f"({len(outcome.new)} new problem(s) since the previous run, {len(outcome.resolved)} resolved).</p>"
            "<p>Zuora is upstream: services.yml follows Zuora; a SKU missing in Zuora needs a finance SKU "
            "request.</p>"
            + (
                "<table border='1' cellpadding='4'><tr><th>SKU</th><th>Currency</th><th>Status</th><th>Action</th>"
                f"</tr>{items}</table>"
                if shown
                else ""
            )
            + (f"<p>... and {more} more in the attached workbook.</p>" if more else "")
            + (
                "<p>services.yml ids used by more than one entry: " + escape("; ".join(outcome.duplicated_ids)) + "</p>"
                if outcome.duplicated_ids
                else ""
            )
            + "<table border='1' cellpadding='4'><tr><th>Status</th><th>Rows</th><th>Meaning</th></tr>"
            + status_rows
            + "</table>"
            + issue_html
            + f"<p>{escape(attached_text)} and stored as "
            + f"{escape(outcome.folder)}/ in the exports store{browse_html}.</p>"
        )
        message = EmailMessage(policy=SMTP_POLICY)
        message["Subject"] = (
            f"[ps-integrations] SKU reconciliation {as_of.isoformat()}: {len(action_rows)} row(s) need action"
        )
        message["To"] = self.config.finance_recipients
        message.set_content("\n".join(text_lines))
        message.add_alternative(body_html, subtype="html")
        for export in attached:
            maintype, subtype = (
                ("text", "csv")
                if export.name.endswith(".csv")
                else ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
            )
            message.add_attachment(export.content, maintype=maintype, subtype=subtype, filename=export.name)
        self._send(message)
        self.store.set_value(JOB, key, digest)
        self.summary.add("mails sent", 1)

    def _mail_cannot_reconcile(self, as_of: date, source: CatalogSource, error: CatalogSyntaxError) -> None:
        """Finance hears that nothing was reconciled, and why, once per as_of and error."""
        digest = hashlib.sha256(f"{source.blob_id}:{error}".encode()).hexdigest()
        key = f"mail-error:{as_of.isoformat()}"
        if self.store.get_value(JOB, key) == digest:
            return
        where = f"{source.project}/{source.path} at {source.ref}" if source.project else source.source
        text = (
            f"The SKU reconciliation as of {as_of.isoformat()} could not run: services.yml ({where}) is not valid "
            f"YAML at line {error.line}, column {error.column}: {error.problem}.\n\n"
            "Nothing was reconciled and no export was written for this date. Once the file is fixed, the next "
            "run (or a manual re-run of this date) reconciles as usual."
        )
        message = EmailMessage(policy=SMTP_POLICY)
        message["Subject"] = (
            f"[ps-integrations] SKU reconciliation {as_of.isoformat()} could not run: services.yml line "
            f"{error.line} is not valid YAML"
        )
        message["To"] = self.config.finance_recipients
        message.set_content(text)
        message.add_alternative(
            "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in text.split("\n\n")), subtype="html"
        )
        try:
            self._send(message)
        except Exception:  # the run fails anyway on the syntax error; a mail problem must not hide it
            log.exception("Could not mail finance that the reconciliation could not run")
            return
        self.store.set_value(JOB, key, digest)
