"""The Salesforce and merge-request steps of the SKU reconciliation against in-memory fakes (issue #19)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from ps_integrations.domain.price_book import PriceBookEntry, PriceBookRead, SalesforceProduct
from ps_integrations.domain.services_catalog import ServiceEntry
from ps_integrations.domain.sku_reconciliation import reconcile
from ps_integrations.domain.zuora_catalog import join_zuora_catalog
from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.jobs.sku_reconciliation.config import ReconciliationConfig
from ps_integrations.jobs.sku_reconciliation.salesforce import keep_merge_request, read_price_book
from ps_integrations.jobs.sku_reconciliation.sources import CatalogSource
from ps_integrations.run_summary import RunSummary

AS_OF = date(2026, 11, 21)
ON = ReconciliationConfig(
    salesforce=True, salesforce_price_book="Professional Services", services_yml_merge_request=True
)


def _zuora():
    day = "2020-01-01"
    return join_zuora_catalog(
        [{"Id": "p-a", "Name": "A", "SKU": "A", "EffectiveStartDate": day, "EffectiveEndDate": "2099-12-31"}],
        [{"Id": "rp-a", "ProductId": "p-a", "EffectiveStartDate": day, "EffectiveEndDate": "2099-12-31"}],
        [{"Id": "c-a", "ProductRatePlanId": "rp-a"}],
        [{"Id": "t-a", "ProductRatePlanChargeId": "c-a", "Currency": "USD", "Price": Decimal(100), "Tier": 1}],
        AS_OF,
    )


def _rows(zuora):
    return reconcile([ServiceEntry(id="a", name="A", sku="A", price=Decimal(100), currency="USD")], zuora, AS_OF)


class FakeSalesforce:
    def __init__(self, products: Sequence[SalesforceProduct] = (), error: SalesforceApiError | None = None) -> None:
        self.products, self.error, self.asked = tuple(products), error, []

    def price_book_products(
        self, families: Sequence[str] = (), price_book: str | None = None, batch_size: int | None = None
    ) -> PriceBookRead:
        self.asked.append((tuple(families), price_book))
        if self.error:
            raise self.error
        return PriceBookRead(self.products, multi_currency=True)


def _entry(book: str, standard: bool) -> PriceBookEntry:
    return PriceBookEntry(f"01u-{book}", f"01s-{book}", book, standard, True, Decimal(100), True, False, "USD")


def test_salesforce_side_asks_for_the_configured_families_and_book():
    zuora = _zuora()
    fake = FakeSalesforce(
        [SalesforceProduct("01t-a", "A", "A", True, "Consulting", (_entry("Professional Services", False),))]
    )
    summary = RunSummary(counts={})
    side = read_price_book(fake, ON, _rows(zuora), zuora, AS_OF, summary)
    assert fake.asked == [(ON.salesforce_product_families, "Professional Services")]
    [row] = side.rows
    assert (row["salesforce_status"], row["salesforce_sellable"], row["salesforce_price"]) == (
        "match",
        "yes",
        Decimal(100),
    )
    assert side.counts["match"] == 1 and side.finance_items == () and summary.counts["salesforce products"] == 1


def test_a_misnamed_price_book_is_said_and_every_row_is_not_sellable():
    zuora = _zuora()
    fake = FakeSalesforce([SalesforceProduct("01t-a", "A", "A", True, "Consulting", (_entry("Standard", True),))])
    summary = RunSummary(counts={})
    side = read_price_book(fake, ON, _rows(zuora), zuora, AS_OF, summary)
    assert side.rows[0]["salesforce_status"] == "not_sellable_in_salesforce"
    assert "Salesforce price book 'Professional Services' holds none of the PS products" in summary.line()
    [item] = side.finance_items
    assert item.step == "salesforce_catalog"


def test_salesforce_unreachable_fails_by_name_and_the_rows_go_on_without_its_side():
    zuora = _zuora()
    summary = RunSummary(counts={})
    side = read_price_book(
        FakeSalesforce(error=SalesforceApiError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")),
        ON,
        _rows(zuora),
        zuora,
        AS_OF,
        summary,
    )
    assert [row["salesforce_status"] for row in side.rows] == [""]
    [failure] = summary.failures
    assert failure.describe() == "Salesforce price book: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."


def test_off_means_no_salesforce_call_and_empty_columns():
    zuora = _zuora()
    fake = FakeSalesforce()
    side = read_price_book(fake, ReconciliationConfig(), _rows(zuora), zuora, AS_OF, RunSummary(counts={}))
    assert fake.asked == [] and side.rows[0]["salesforce_status"] == "" and side.counts == {}


def test_no_merge_request_for_a_local_file_or_another_ref():
    zuora = _zuora()
    rows = _rows(zuora)
    summary = RunSummary(counts={})
    local = CatalogSource("- id: a\n", "/tmp/services.yml", None, None, None)
    assert keep_merge_request(object(), ON, local, rows, zuora, AS_OF, summary) is None  # type: ignore[arg-type]
    other = CatalogSource("", "x", "catalog-2026-10", None, None, ON.services_yml_project, ON.services_yml_path)
    assert keep_merge_request(object(), ON, other, rows, zuora, AS_OF, summary) is None  # type: ignore[arg-type]
    expected = "services.yml merge request not kept: services.yml was not read from "
    assert summary.notes == [expected + "professional-services/services-catalog@main"] * 2
