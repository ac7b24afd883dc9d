"""The SKU reconciliation job: Zuora's catalog against services.yml, exported and told to finance.

``run()`` is the story: read the catalog, read Zuora, reconcile, add Salesforce's price book (when
configured), keep the services.yml merge request (when configured), export, record what changed
since the previous ``as_of``, keep the finance issue current, mail finance. Each step is a function or a
small class of its own module; a third system (a price book) is one more read step and one more
field of :class:`Sources`.
"""

from __future__ import annotations

from datetime import date, datetime
from email.message import EmailMessage

from ps_integrations.domain.services_catalog import Catalog, CatalogSyntaxError, parse_services_yml
from ps_integrations.domain.sku_reconciliation import ProblemKey, Row, problem_keys, reconcile, status_counts
from ps_integrations.exports import ExportFile
from ps_integrations.jobs.sku_reconciliation.config import ReconciliationConfig
from ps_integrations.jobs.sku_reconciliation.files import build_files, manifest_file
from ps_integrations.jobs.sku_reconciliation.finance_issue import FinanceIssue
from ps_integrations.jobs.sku_reconciliation.finance_mail import FinanceMail
from ps_integrations.jobs.sku_reconciliation.merge_request import ServicesYmlRepository
from ps_integrations.jobs.sku_reconciliation.outcome import Outcome, browse_url
from ps_integrations.jobs.sku_reconciliation.ports import (
    ExportFolders,
    GitLab,
    ReconciliationRecords,
    Send,
    ZuoraCatalog,
)
from ps_integrations.jobs.sku_reconciliation.salesforce import PriceBookSource, keep_merge_request, read_price_book
from ps_integrations.jobs.sku_reconciliation.sources import (
    CatalogSource,
    Sources,
    ZuoraCatalogRead,
    read_services_yml,
    read_zuora,
)
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.stores.sku_reconciliation import ReconciliationRun


def _send_message(message: EmailMessage) -> None:
    from ps_integrations.mail import send_message

    send_message(message)


class SkuReconciliation:
    def __init__(
        self,
        zuora: ZuoraCatalog,
        gitlab: GitLab,
        records: ReconciliationRecords,
        exports: ExportFolders,
        config: ReconciliationConfig,
        run_id: str,
        send: Send | None = None,
        salesforce: PriceBookSource | None = None,
        merge_requests: ServicesYmlRepository | None = None,
    ) -> None:
        self.zuora, self.gitlab, self.records, self.exports = zuora, gitlab, records, exports
        self.salesforce, self.merge_requests = salesforce, merge_requests
        self.config = config
        self.run_id = run_id
        self.summary = RunSummary(counts={})
        self.mail = FinanceMail(records.mail, send or _send_message, config.finance_recipients, self.summary)
        self.issue = FinanceIssue(gitlab, records, config.finance_project, self.summary)

    def run(self, as_of: date, ref: str | None, fetched_at: datetime) -> RunSummary:
        source, catalog = self.read_catalog(as_of, ref)
        zuora = read_zuora(self.zuora, self.config.zuora_batch_size, as_of)
        rows = self.reconcile(as_of, catalog, zuora)
        salesforce = read_price_book(self.salesforce, self.config, rows, zuora.products, as_of, self.summary)
        merge_request = keep_merge_request(
            self.merge_requests, self.config, source, rows, zuora.products, as_of, self.summary
        )
        rows = salesforce.rows
        counts = status_counts(rows)
        sources = Sources(zuora.endpoint, zuora.records, source)
        folder, files = self.export(as_of, rows, counts, catalog, sources, fetched_at)
        new, resolved = self.record(as_of, rows, counts, source, folder)
        outcome = Outcome(
            as_of,
            rows,
            counts,
            folder,
            new,
            resolved,
            catalog.duplicated_ids(),
            sources,
            browse_url(self.config.exports_browse_url, folder),
            salesforce.finance_items,
            merge_request,
            salesforce.counts,
        )
        issue_url = self.issue.keep_current(outcome)
        self.mail.reconciled(outcome, files, issue_url)
        return self.summary

    # --- the steps ----------------------------------------------------------------------------------
    def read_catalog(self, as_of: date, ref: str | None) -> tuple[CatalogSource, Catalog]:
        """services.yml, parsed; a syntax error mails finance and stops the run (nothing to reconcile)."""
        source = read_services_yml(self.gitlab, self.config, ref)
        try:
            return source, parse_services_yml(source.text, source.source)
        except CatalogSyntaxError as error:
            self.mail.cannot_reconcile(as_of.isoformat(), source, error)
            raise  # fix the file; nothing was reconciled

    def reconcile(self, as_of: date, catalog: Catalog, zuora: ZuoraCatalogRead) -> list[Row]:
        rows = reconcile(list(catalog.entries), zuora.products, as_of, catalog.invalid)
        self.summary.add("read", len(catalog.entries) + zuora.records.get("Product", 0))
        self.summary.add("rows", len(rows))
        for status, count in status_counts(rows).items():
            if count:
                self.summary.add(status, count)
        for entry in catalog.invalid:
            line = f"line {entry.line}" if entry.line else None
            self.summary.fail(RecordFailure("services.yml", f"entry {entry.entry_id}", entry.reason, line))
        duplicated = catalog.duplicated_ids()
        if duplicated:
            self.summary.note(f"services.yml ids used by more than one entry: {'; '.join(duplicated)}")
        return rows

    def export(
        self,
        as_of: date,
        rows: list[Row],
        counts: dict[str, int],
        catalog: Catalog,
        sources: Sources,
        fetched_at: datetime,
    ) -> tuple[str, list[ExportFile]]:
        folder = f"sku_reconciliation/{as_of.isoformat()}"
        duplicated = catalog.duplicated_ids()
        files = build_files(rows, as_of, sources, duplicated)
        invalid = [entry.describe() for entry in catalog.invalid]
        manifest = manifest_file(as_of, rows, counts, files, sources, fetched_at, invalid, duplicated)
        self.exports.write_folder(folder, f"SKU reconciliation as of {as_of.isoformat()}", [*files, manifest])
        self.summary.note(f"export: {folder}")
        return folder, files

    def record(
        self, as_of: date, rows: list[Row], counts: dict[str, int], source: CatalogSource, folder: str
    ) -> tuple[list[ProblemKey], list[ProblemKey]]:
        """Record this run's problems; return those new and those resolved since the previous as_of."""
        keys = problem_keys(rows)
        previous = self.records.previous_problems(as_of)
        run = ReconciliationRun(as_of, source.ref, source.blob_id, counts, folder, self.run_id)
        self.records.record_run(run, keys)
        new, resolved = (sorted(keys), []) if previous is None else (sorted(keys - previous), sorted(previous - keys))
        self.summary.note(f"since the previous as_of: {len(new)} new problem(s), {len(resolved)} resolved")
        return new, resolved
