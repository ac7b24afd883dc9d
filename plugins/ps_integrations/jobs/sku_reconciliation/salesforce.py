"""Step 3b (issue #19): Salesforce's price book as the third system, and the services.yml merge request.

Salesforce's PS products and their price book entries give every reconciliation row Salesforce's
side (``domain.price_book``); what services.yml should follow from Zuora becomes one merge request
(``merge_request``); what services.yml cannot fix goes to the finance issue with the missing step of
the SKU process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Protocol

from ps_integrations.domain.price_book import (
    FinanceItem,
    PriceBookRead,
    PriceBookSettings,
    add_salesforce,
    finance_items,
    rows_with_salesforce,
    salesforce_counts,
)
from ps_integrations.domain.services_yml_edit import follow_zuora
from ps_integrations.domain.sku_reconciliation import Row
from ps_integrations.domain.zuora_catalog import ZuoraProduct
from ps_integrations.exceptions import GitLabApiError, SalesforceApiError
from ps_integrations.jobs.sku_reconciliation.config import ReconciliationConfig
from ps_integrations.jobs.sku_reconciliation.merge_request import (
    MergeRequestOutcome,
    MergeRequestSettings,
    ServicesYmlMergeRequest,
    ServicesYmlRepository,
)
from ps_integrations.jobs.sku_reconciliation.sources import CatalogSource
from ps_integrations.run_summary import RecordFailure, RunSummary


class PriceBookSource(Protocol):
    """Salesforce's PS products with their price book entries (``SalesforceHook.price_book_products``)."""

    def price_book_products(
        self, families: Sequence[str] = (), price_book: str | None = None, batch_size: int | None = None
    ) -> PriceBookRead: ...


@dataclass(frozen=True)
class SalesforceSide:
    """The rows with Salesforce's columns and what services.yml cannot fix."""

    rows: list[Row]
    finance_items: tuple[FinanceItem, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    multi_currency: bool | None = None


def read_price_book(
    salesforce: PriceBookSource | None,
    config: ReconciliationConfig,
    rows: list[Row],
    zuora: Sequence[ZuoraProduct],
    as_of: date,
    summary: RunSummary,
) -> SalesforceSide:
    """Salesforce's side of each row; without Salesforce (off, or unreachable) the columns stay empty and
    the finance items are the reconciliation's own."""
    if salesforce is None or not config.salesforce:
        return SalesforceSide(rows_with_salesforce(rows, None))
    try:
        read = salesforce.price_book_products(config.salesforce_product_families, config.salesforce_price_book)
    except SalesforceApiError as error:
        summary.fail(RecordFailure("Salesforce", "price book", f"{error.code}: {error.message}"))
        return SalesforceSide(rows_with_salesforce(rows, None))
    book = config.salesforce_price_book
    if book and read.products and not any(e.price_book_name == book for p in read.products for e in p.entries):
        summary.note(f"Salesforce price book {book!r} holds none of the PS products: is its name right?")
    settings = PriceBookSettings(book, config.salesforce_org_currency, read.multi_currency)
    outcome = add_salesforce(rows, zuora, read.products, as_of, settings)
    counts = salesforce_counts(outcome)
    summary.add("salesforce products", len(read.products))
    for status, count in counts.items():
        if count and status not in ("match", "not_compared"):
            summary.add(status, count)
    if not read.multi_currency:
        summary.note(f"Salesforce has no multi-currency: its prices are {config.salesforce_org_currency}")
    return SalesforceSide(
        rows_with_salesforce(rows, outcome), tuple(finance_items(rows, outcome)), counts, read.multi_currency
    )


def keep_merge_request(
    repository: ServicesYmlRepository | None,
    config: ReconciliationConfig,
    source: CatalogSource,
    rows: list[Row],
    zuora: Sequence[ZuoraProduct],
    as_of: date,
    summary: RunSummary,
) -> MergeRequestOutcome | None:
    """The one services.yml merge request, when configured and services.yml came from its branch."""
    if repository is None or not config.services_yml_merge_request:
        return None
    if source.project is None or source.ref != config.services_yml_ref:
        summary.note(
            "services.yml merge request not kept: services.yml was not read from "
            f"{config.services_yml_project}@{config.services_yml_ref}"
        )
        return None
    settings = MergeRequestSettings(
        config.services_yml_project,
        config.services_yml_path,
        config.services_yml_ref,
        config.services_yml_merge_request_branch,
        config.services_yml_merge_request_labels,
    )
    try:
        outcome = ServicesYmlMergeRequest(repository, settings).keep(follow_zuora(rows, zuora), source.text, as_of)
    except GitLabApiError as error:
        reason = f"HTTP {error.status} {error.endpoint}: {error.message}"
        summary.fail(RecordFailure("GitLab", f"services.yml merge request in {settings.project}", reason))
        return None
    summary.note(outcome.message)
    return outcome


if TYPE_CHECKING:  # the real hook fits
    from ps_integrations.hooks.salesforce import SalesforceHook

    _HOOK_FITS: type[PriceBookSource] = SalesforceHook
