"""The SKU reconciliation job: Zuora catalog vs services.yml, exported for finance.

Reads the four Zuora catalog objects (ZOQL has no joins: one query each, joined in pandas) and
services.yml (from its GitLab repository at a ref, recording the blob id, or from a local file),
reconciles them (``domain.sku_reconciliation``), writes the export folder, records the problems
to report drift against the previous ``as_of``, mails finance and keeps one GitLab issue in the
finance project current.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from ps_integrations import clock
from ps_integrations.domain.gitlab_text import inline_markdown
from ps_integrations.domain.services_catalog import parse_services_yml
from ps_integrations.domain.sku_reconciliation import (
    STATUSES,
    join_zuora_catalog,
    problem_keys,
    reconcile,
    status_counts,
)
from ps_integrations.exceptions import GitLabApiError
from ps_integrations.exports import Column, ExportFile, ExportStore, csv_file, json_file
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.xlsx import workbook_bytes

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
COLUMNS = (
    Column("sku", "SKU (product code); empty for services.yml entries without one"),
    Column("currency", "ISO 4217 currency the prices on this row are in"),
    Column("status", "Most severe problem: " + ", ".join(STATUSES) + " (match when none)"),
    Column("problems", "Every problem found on this row, most severe first, separated by '; '"),
    Column("services_yml_id", "services.yml entry id(s) with this SKU"),
    Column("services_yml_name", "services.yml name(s)"),
    Column("services_yml_category", "services.yml category"),
    Column("services_yml_price", "services.yml price in this currency (decimal)"),
    Column("zuora_product_id", "Zuora Product Id(s) with this SKU"),
    Column("zuora_name", "Zuora product name(s)"),
    Column("zuora_active_prices", "First-tier prices of the Zuora rate plans active on as_of, in this currency"),
    Column("zuora_effective_start", "Zuora product EffectiveStartDate(s), ISO 8601"),
    Column("zuora_effective_end", "Zuora product EffectiveEndDate(s), ISO 8601"),
    Column("zuora_rate_plans", "Number of Zuora rate plans of the product(s)"),
)


@dataclass(frozen=True)
class ReconciliationConfig:
    services_yml_project: str = "professional-services/services-catalog"
    services_yml_path: str = "data/services.yml"
    services_yml_ref: str = "main"
    services_yml_local_path: str | None = None
    finance_project: str = "professional-services/finance"
    finance_recipients: str = "finance@example.com"
    zuora_batch_size: int = 2000

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ReconciliationConfig:
        from ps_integrations.settings import settings_from_mapping

        return settings_from_mapping(cls, data, "ps_sku_reconciliation_config")


@dataclass(frozen=True)
class Outcome:
    """What one reconciliation found, for the finance mail and issue."""

    as_of: date
    problems: list[dict[str, Any]]
    counts: dict[str, int]
    paths: list[str]
    new: list[tuple[str, str, str]]
    resolved: list[tuple[str, str, str]]
    invalid: Any


@dataclass(frozen=True)
class CatalogSource:
    text: str
    source: str
    ref: str | None
    blob_id: str | None
    commit_id: str | None


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
            f"cannot read {config.services_yml_path} at {wanted} in {config.services_yml_project}: "
            f"{error.error_message}",
        ) from None
    source = f"{config.services_yml_project}/{config.services_yml_path}@{wanted}"
    return CatalogSource(found.decode().decode("utf-8"), source, wanted, found.blob_id, found.commit_id)


def fetch_zuora(zuora: Any, batch_size: int) -> dict[str, list[dict[str, Any]]]:
    return {name: list(zuora.query(zoql, batch_size=batch_size)) for name, zoql in ZOQL.items()}


def build_files(rows: list[dict[str, Any]], as_of: date) -> list[ExportFile]:
    counts = status_counts(rows)
    table = csv_file(
        "reconciliation.csv",
        "One row per SKU and currency (services.yml entries without a SKU: one row per id).",
        COLUMNS,
        rows,
    )
    header = [column.name for column in COLUMNS]
    problems = [row for row in rows if row["status"] != "match"]
    sheets = [
        ("Summary", ["status", "rows"], [[status, count] for status, count in counts.items()]),
        ("Problems", header, [[row[name] for name in header] for row in problems]),
        ("All rows", header, [[row[name] for name in header] for row in rows]),
    ]
    moment = datetime.combine(as_of, time(0), UTC).replace(tzinfo=None)
    workbook = ExportFile(
        "reconciliation.xlsx",
        workbook_bytes(sheets, moment, f"SKU reconciliation {as_of.isoformat()}"),
        "The same rows as reconciliation.csv: a Summary sheet (rows per status), a Problems sheet, and All rows.",
        COLUMNS,
    )
    return [table, workbook]


class SkuReconciliation:
    def __init__(
        self, zuora: Any, gitlab: Any, store: Any, exports: ExportStore, config: ReconciliationConfig, run_id: str
    ) -> None:
        self.zuora, self.gitlab, self.store, self.exports = zuora, gitlab, store, exports
        self.config = config
        self.run_id = run_id
        self.summary = RunSummary(counts={})

    def run(self, as_of: date, ref: str | None, fetched_at: datetime) -> RunSummary:
        source = fetch_services_yml(self.gitlab, self.config, ref)
        catalog = parse_services_yml(source.text, source.source)  # a YAML syntax error fails the run here
        zuora = fetch_zuora(self.zuora, self.config.zuora_batch_size)
        products = join_zuora_catalog(
            zuora["Product"],
            zuora["ProductRatePlan"],
            zuora["ProductRatePlanCharge"],
            zuora["ProductRatePlanChargeTier"],
            as_of,
        )
        rows = reconcile(list(catalog.entries), products, as_of)
        counts = status_counts(rows)
        self.summary.add("read", len(catalog.entries) + len(zuora["Product"]))
        self.summary.add("rows", len(rows))
        for status, count in counts.items():
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
        duplicated_ids = sorted(
            {e.id for e in catalog.entries if sum(1 for other in catalog.entries if other.id == e.id) > 1}
        )
        if duplicated_ids:
            self.summary.note(f"services.yml ids used by more than one entry: {', '.join(duplicated_ids)}")

        folder = f"sku_reconciliation/{as_of.isoformat()}"
        files = build_files(rows, as_of)
        manifest = json_file(
            "manifest.json",
            "What this export was built from: row counts, sha256 of each data file, the services.yml ref "
            "and blob id, when the inputs were fetched.",
            {
                "as_of": as_of.isoformat(),
                "rows": len(rows),
                "rows_by_status": counts,
                "files": {export.name: {"sha256": export.sha256, "bytes": len(export.content)} for export in files},
                "services_yml": {
                    "source": source.source,
                    "ref": source.ref,
                    "blob_id": source.blob_id,
                    "commit_id": source.commit_id,
                },
                "zuora_records": {name: len(records) for name, records in zuora.items()},
                "inputs_fetched_at": fetched_at.astimezone(UTC).isoformat(timespec="seconds"),
                "invalid_services_yml_entries": [entry.describe() for entry in catalog.invalid],
            },
        )
        paths = self.exports.write_folder(folder, f"SKU reconciliation as of {as_of.isoformat()}", [*files, manifest])
        self.summary.note(f"export: {paths[0].rsplit('/', 1)[0]}")

        new, resolved = self._record_and_compare(as_of, rows, source, counts, folder)
        self.summary.note(f"since the previous as_of: {len(new)} new problem(s), {len(resolved)} resolved")
        problems = [row for row in rows if row["status"] != "match"]
        outcome = Outcome(as_of, problems, counts, paths, new, resolved, catalog.invalid)
        self._finance_issue(outcome)
        self._mail_finance(outcome)
        return self.summary

    # --- drift ------------------------------------------------------------------------------------
    def _record_and_compare(
        self, as_of: date, rows: list[dict[str, Any]], source: CatalogSource, counts: dict[str, int], folder: str
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

    def _issue_body(self, outcome: Outcome) -> str:
        as_of, problems, counts, paths = outcome.as_of, outcome.problems, outcome.counts, outcome.paths
        new, resolved, invalid = outcome.new, outcome.resolved, outcome.invalid
        lines = [
            f"## SKU reconciliation as of {as_of.isoformat()}",
            "",
            "Zuora's product catalog does not match services.yml. This issue is kept current by the "
            "`ps_sku_reconciliation` job and closed when everything is reconciled.",
            "",
            "| Status | Rows |",
            "|---|---:|",
            *[f"| {status} | {count} |" for status, count in counts.items() if count and status != "match"],
            "",
            f"New since the previous run: {len(new)}; resolved: {len(resolved)}.",
            "",
            "| SKU | Currency | Status | Problems | services.yml | Zuora | services.yml price | Zuora prices |",
            "|---|---|---|---|---|---|---:|---:|",
        ]
        for row in problems:
            cells = [
                row["sku"] or "-",
                row["currency"],
                row["status"],
                row["problems"],
                f"{row['services_yml_id']} {row['services_yml_name']}".strip() or "-",
                f"{row['zuora_name']} ({row['zuora_effective_start']} to {row['zuora_effective_end']})"
                if row["zuora_product_id"]
                else "-",
                row["services_yml_price"] or "-",
                row["zuora_active_prices"] or "-",
            ]
            lines.append("| " + " | ".join(inline_markdown(str(cell), 300) for cell in cells) + " |")
        if invalid:
            lines += [
                "",
                "**services.yml entries that could not be read:**",
                *[f"- {inline_markdown(entry.describe())}" for entry in invalid],
            ]
        lines += ["", "Export: " + ", ".join(f"`{path}`" for path in paths), "", ISSUE_MARKER]
        return "\n".join(lines)

    def _finance_issue(self, outcome: Outcome) -> None:
        as_of, problems, invalid = outcome.as_of, outcome.problems, outcome.invalid
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
            if problems or invalid:
                body = self._issue_body(outcome)
                title = f"SKU reconciliation: {len(problems)} problem row(s) between Zuora and services.yml"
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
            elif issue is not None and issue.state != "closed":
                issue.notes.create({"body": f"Everything is reconciled as of {as_of.isoformat()}. Closing."})
                project.issues.update(issue.iid, {"state_event": "close"})
                self.summary.note(f"finance issue #{issue.iid} closed: all reconciled")
        except gitlab.exceptions.GitlabError as error:
            self.summary.fail(
                RecordFailure("GitLab", f"finance issue in {self.config.finance_project}", str(error.error_message))
            )

    def _mail_finance(self, outcome: Outcome) -> None:
        as_of, counts, paths, new, resolved = (
            outcome.as_of,
            outcome.counts,
            outcome.paths,
            outcome.new,
            outcome.resolved,
        )
        from ps_integrations.mail import send_html_mail

        content = json.dumps(
            {"counts": counts, "paths": paths, "new": new, "resolved": resolved}, sort_keys=True, default=str
        )
        digest = hashlib.sha256(content.encode()).hexdigest()
        key = f"mail:{as_of.isoformat()}"
        if self.store.get_value(JOB, key) == digest:
            self.summary.note("finance mail already sent for this export")
            return
        problems = sum(count for status, count in counts.items() if status != "match")
        rows = "".join(f"<tr><td>{status}</td><td align='right'>{count}</td></tr>" for status, count in counts.items())
        html = (
            f"<p>The SKU reconciliation as of <b>{as_of.isoformat()}</b> has landed: {problems} row(s) need attention "
            f"({len(new)} new since the previous run, {len(resolved)} resolved).</p>"
            f"<table border='1' cellpadding='4'><tr><th>Status</th><th>Rows</th></tr>{rows}</table>"
            "<p>Files:</p><ul>" + "".join(f"<li>{path}</li>" for path in paths) + "</ul>"
        )
        send_html_mail(
            self.config.finance_recipients,
            f"[ps-integrations] SKU reconciliation {as_of.isoformat()}: {problems} row(s) need attention",
            html,
        )
        self.store.set_value(JOB, key, digest)
        self.summary.add("mails sent", 1)
