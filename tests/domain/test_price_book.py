"""Salesforce's side of the SKU reconciliation (issue #19), on hand-made records and on the sandbox seeds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ps_integrations.domain.price_book import (
    SALESFORCE_GLOSSARY,
    SALESFORCE_STATUSES,
    SKU_PROCESS_STEPS,
    PriceBookEntry,
    PriceBookSettings,
    SalesforceProduct,
    add_salesforce,
    finance_items,
    salesforce_counts,
)
from ps_integrations.domain.services_catalog import ServiceEntry
from ps_integrations.domain.sku_reconciliation import reconcile
from ps_integrations.domain.zuora_catalog import join_zuora_catalog

AS_OF = date(2026, 11, 21)
MULTI = PriceBookSettings()
SINGLE = PriceBookSettings(multi_currency=False)


def zuora(sku, end="2099-12-31", prices=(("USD", "100"),), start="2020-01-01"):
    return join_zuora_catalog(
        [{"Id": f"p-{sku}", "Name": f"Zuora {sku}", "SKU": sku, "EffectiveStartDate": start, "EffectiveEndDate": end}],
        [
            {"Id": f"rp-{sku}-{c}", "ProductId": f"p-{sku}", "EffectiveStartDate": start, "EffectiveEndDate": end}
            for c, _ in prices
        ],
        [{"Id": f"c-{sku}-{c}", "ProductRatePlanId": f"rp-{sku}-{c}"} for c, _ in prices],
        [
            {
                "Id": f"t-{sku}-{c}",
                "ProductRatePlanChargeId": f"c-{sku}-{c}",
                "Currency": c,
                "Price": Decimal(p),
                "Tier": 1,
            }
            for c, p in prices
        ],
        AS_OF,
    )[0]


def entry(sku, price="100", currency="USD"):
    return ServiceEntry(id=f"id-{sku}", name=f"Zuora {sku}", sku=sku, price=Decimal(price), currency=currency)


def pbe(price="100", currency="USD", active=True, book="Standard Price Book", standard=True, book_active=True):
    return PriceBookEntry(
        f"01u-{book}-{currency}",
        f"01s-{book}",
        book,
        standard,
        book_active,
        Decimal(price),
        active,
        not standard,
        currency,
    )


def sf(sku, *entries, active=True):
    return SalesforceProduct(f"01t-{sku}", sku, f"SF {sku}", active, "Consulting", tuple(entries))


def side_of(entries, products, salesforce, settings=MULTI, currency="USD"):
    rows = reconcile(entries, products, AS_OF)
    outcome = add_salesforce(rows, products, salesforce, AS_OF, settings)
    return next(side for row, side in zip(rows, outcome.sides, strict=True) if row["currency"] == currency), outcome


@pytest.mark.parametrize(
    ("salesforce", "status", "sellable", "price"),
    [
        ([sf("A", pbe())], "match", True, Decimal(100)),
        ([], "not_sellable_in_salesforce", False, None),
        ([sf("A")], "not_sellable_in_salesforce", False, None),  # in the catalog, not in the price book
        ([sf("A", pbe(active=False))], "not_sellable_in_salesforce", False, None),
        ([sf("A", pbe(book_active=False))], "not_sellable_in_salesforce", False, None),
        ([sf("A", pbe(currency="EUR"))], "not_sellable_in_salesforce", False, None),
        ([sf("A", pbe(), active=False)], "inactive_in_salesforce", False, None),
        ([sf("A", pbe("90"))], "price_differs_in_salesforce", True, Decimal(90)),
        ([sf("a ", pbe())], "match", True, Decimal(100)),  # the SKU as the reconciliation matches it
    ],
)
def test_salesforce_status_against_an_active_zuora_product(salesforce, status, sellable, price):
    side, _ = side_of([entry("A")], [zuora("A")], salesforce)
    assert (side.status, side.sellable, side.price) == (status, sellable, price)
    assert bool(side.action) == (status != "match")
    assert side.step == ("" if status == "match" else "salesforce_catalog")


def test_actions_name_the_system_the_sku_and_the_price():
    side, _ = side_of([entry("A")], [zuora("A", prices=(("USD", "120"),))], [sf("A", pbe("100"))])
    assert side.action == (
        "Sales operations (Salesforce): change the USD list price of A in Standard Price Book from 100.00 to "
        "120.00 (Zuora's price)"
    )
    side, _ = side_of([entry("A")], [zuora("A")], [])
    assert 'create product A ("Zuora A") and add it to the standard price book at 100.00 USD' in side.action
    assert "validate the SKU shows in Salesforce" in side.action
    assert side.details == 'no Salesforce product has ProductCode "A"'


def test_the_configured_ps_price_book_sells():
    ps = PriceBookSettings(price_book="Professional Services")
    only_standard = [sf("A", pbe())]
    side, _ = side_of([entry("A")], [zuora("A")], only_standard, ps)
    assert side.status == "not_sellable_in_salesforce"
    assert "has no entry in Professional Services in USD" in side.action
    both = [sf("A", pbe(), pbe("95", book="Professional Services", standard=False))]
    side, _ = side_of([entry("A")], [zuora("A")], both, ps)
    assert (side.status, side.price, side.price_book) == (
        "price_differs_in_salesforce",
        Decimal(95),
        "Professional Services",
    )


def test_retired_in_zuora_but_sellable_in_salesforce():
    retired = zuora("A", end="2025-06-30")
    side, _ = side_of([entry("A")], [retired], [sf("A", pbe())], currency="USD")
    assert side.status == "sellable_but_retired_in_zuora" and "Zuora ended it on 2025-06-30" in side.action
    side, _ = side_of([entry("A")], [retired], [sf("A", pbe(active=False))], currency="USD")
    assert side.status == "match"  # neither sells it


def test_retired_product_no_longer_in_services_yml_gets_a_row_of_its_own_while_salesforce_sells_it():
    retired = zuora("OLD", end="2025-06-30")
    rows = reconcile([], [retired], AS_OF)
    assert rows == []  # Zuora and services.yml agree: nobody offers it
    outcome = add_salesforce(rows, [retired], [sf("OLD", pbe())], AS_OF, MULTI)
    [extra] = outcome.retired_but_sellable
    assert (extra.sku, extra.currency, extra.salesforce.status) == ("OLD", "USD", "sellable_but_retired_in_zuora")
    assert add_salesforce(rows, [retired], [sf("OLD", pbe(active=False))], AS_OF, MULTI).retired_but_sellable == ()


def test_nothing_to_compare():
    # services.yml only: missing in Zuora; Salesforce's side is shown but not judged
    side, _ = side_of([entry("A")], [], [sf("A", pbe())])
    assert (side.status, side.sellable, side.price) == ("not_compared", True, Decimal(100))
    # Zuora starts later
    side, _ = side_of([entry("A")], [zuora("A", start="2027-01-01")], [])
    assert side.status == "not_compared"


def test_single_currency_org_compares_its_own_currency_only():
    products = [zuora("A", prices=(("USD", "100"), ("EUR", "92")))]
    single_entry = PriceBookEntry("01u-1", "01s-1", "Standard Price Book", True, True, Decimal(100), True, False, None)
    salesforce = [sf("A", single_entry)]
    usd, _ = side_of([entry("A")], products, salesforce, SINGLE, "USD")
    eur, _ = side_of([entry("A")], products, salesforce, SINGLE, "EUR")
    assert (usd.status, usd.price) == ("match", Decimal(100))
    assert eur.status == "not_compared" and eur.details == "a single-currency org (USD) has no EUR prices"
    # a multi-currency org must price EUR too
    eur, _ = side_of([entry("A")], products, [sf("A", pbe())], MULTI, "EUR")
    assert eur.status == "not_sellable_in_salesforce"


def test_finance_items_carry_the_missing_sku_process_step():
    entries = [entry("A"), entry("B"), entry("C")]
    products = [zuora("A"), zuora("C", prices=(("USD", "150"),))]
    rows = reconcile(entries, products, AS_OF)
    outcome = add_salesforce(rows, products, [sf("A", pbe()), sf("C", pbe("150"))], AS_OF, MULTI)
    items = {(i.sku, i.problem): i.step for i in finance_items(rows, outcome)}
    # B: missing in Zuora (SKU request); C: services.yml's price differs from Zuora: the MR fixes it, not finance
    assert items == {("B", "missing_in_zuora"): "sku_request"}
    assert SKU_PROCESS_STEPS["sku_request"].startswith("1. SKU request")


def test_glossary_covers_every_status():
    assert set(SALESFORCE_GLOSSARY) == set(SALESFORCE_STATUSES)


def test_the_sandbox_seeds_show_every_salesforce_status():
    """The Zuora and Salesforce default seeds against the real services.yml: each gap shows up."""
    from ps_integrations.domain.services_catalog import parse_services_yml
    from ps_integrations.hooks.salesforce import _price_book_product
    from sandbox.reference import SERVICES_YML
    from sandbox.salesforce.models import SalesforceBackend
    from sandbox.zuora.seed import build_catalog

    catalog_records = build_catalog({})
    products = join_zuora_catalog(
        catalog_records["Product"],
        catalog_records["ProductRatePlan"],
        catalog_records["ProductRatePlanCharge"],
        catalog_records["ProductRatePlanChargeTier"],
        AS_OF,
    )
    catalog = parse_services_yml(SERVICES_YML.read_text(encoding="utf-8"))
    rows = reconcile(catalog.entries, products, AS_OF, catalog.invalid)
    backend = SalesforceBackend()
    backend.load({"generate": {"opportunities": 5}})
    page = backend.query(
        "SELECT Id, ProductCode, Name, IsActive, Family, (SELECT Id, Pricebook2Id, Pricebook2.Name, "
        "Pricebook2.IsStandard, Pricebook2.IsActive, UnitPrice, IsActive, UseStandardPrice, CurrencyIsoCode "
        "FROM PricebookEntries WHERE Pricebook2.IsStandard = true) FROM Product2 WHERE ProductCode != null",
        False,
        None,
        "59.0",
    )
    salesforce = [_price_book_product(record) for record in page["records"]]
    outcome = add_salesforce(rows, products, salesforce, AS_OF, MULTI)
    found = {(row["sku"], row["currency"]): side.status for row, side in zip(rows, outcome.sides, strict=True)}
    assert found["GL-RR-SELF", "USD"] == "not_sellable_in_salesforce"
    assert found["PS-ZUORA-ONLY", "USD"] == "not_sellable_in_salesforce"
    assert found["GL-RR-COM", "USD"] == "inactive_in_salesforce"
    assert found["MIG+", "USD"] == "price_differs_in_salesforce"
    assert found["GL-CICD-R", "USD"] == "price_differs_in_salesforce"  # Zuora's price moved, Salesforce's did not
    assert found["GL-PM", "USD"] == "sellable_but_retired_in_zuora"
    assert found["GL-ENGR-6", "EUR"] == "not_sellable_in_salesforce"  # its EUR entry is inactive
    assert found["GL-BAS", "USD"] == found["GL-BAS", "EUR"] == "match"
    counts = salesforce_counts(outcome)
    assert all(counts[status] for status in SALESFORCE_STATUSES)


def test_rows_with_salesforce_carry_both_sides_and_the_retired_products_salesforce_sells():
    from ps_integrations.domain.price_book import needs_any_action, rows_with_salesforce
    from ps_integrations.domain.sku_reconciliation import needs_action

    products = [zuora("A"), zuora("OLD", end="2025-06-30")]
    rows = reconcile([entry("A")], products, AS_OF)
    outcome = add_salesforce(rows, products, [sf("A", pbe("90")), sf("OLD", pbe())], AS_OF, MULTI)
    combined = rows_with_salesforce(rows, outcome)
    by_sku = {row["sku"]: row for row in combined}
    assert by_sku["A"]["status"] == "match" and by_sku["A"]["salesforce_status"] == "price_differs_in_salesforce"
    assert by_sku["A"]["salesforce_price"] == Decimal(90) and by_sku["A"]["salesforce_sellable"] == "yes"
    assert not needs_action(by_sku["A"]) and needs_any_action(by_sku["A"])
    old = by_sku["OLD"]
    assert (old["status"], old["salesforce_status"], old["zuora_effective_end"]) == (
        "not_compared",
        "sellable_but_retired_in_zuora",
        "2025-06-30",
    )
    assert "ended on 2025-06-30; services.yml does not offer it" in old["details"]
    assert by_sku["A"] == rows[0]  # the reconciliation's own values are unchanged
    plain = rows_with_salesforce(rows, None)
    assert plain[0]["salesforce_status"] == "" and plain[0]["salesforce_price"] is None
    assert not needs_any_action(plain[0])
