"""The stand-in's price books (issue #19): Product2, Pricebook2, PricebookEntry as Salesforce serves them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandbox.salesforce.models import SalesforceBackend, SalesforceError

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
GENERATE = {"opportunities": 10, "random_seed": 7, "end_date": "2026-11-01"}
PS_QUERY = (
    "SELECT Id, ProductCode, Name, IsActive, Family, (SELECT Id, Pricebook2Id, Pricebook2.Name, "
    "Pricebook2.IsStandard, UnitPrice, IsActive, UseStandardPrice, CurrencyIsoCode FROM PricebookEntries "
    "WHERE Pricebook2.IsStandard = true OR Pricebook2.Name = 'Professional Services' ORDER BY Id) "
    "FROM Product2 WHERE Family != 'Subscription' AND ProductCode != null ORDER BY ProductCode, Id"
)


def _backend(**seed: object) -> SalesforceBackend:
    backend = SalesforceBackend()
    backend.clock = lambda: NOW
    backend.load({"generate": GENERATE, **seed})
    return backend


def _products(backend: SalesforceBackend, soql: str = PS_QUERY) -> dict[str, dict]:
    page = backend.query(soql, False, None, "59.0")
    assert page["done"]
    return {record["ProductCode"]: record for record in page["records"]}


def _entries(product: dict) -> list[dict]:
    return (product["PricebookEntries"] or {"records": []})["records"]


def test_one_standard_price_book_and_the_ps_price_book() -> None:
    page = _backend().query("SELECT Name, IsActive, IsStandard FROM Pricebook2 ORDER BY Name", False, None, "59.0")
    assert [(r["Name"], r["IsActive"], r["IsStandard"]) for r in page["records"]] == [
        ("Professional Services", True, False),
        ("Standard Price Book", True, True),
    ]


def test_products_with_their_entries_through_the_child_relationship() -> None:
    products = _products(_backend())
    basics = products["GL-BAS"]
    assert basics["attributes"]["type"] == "Product2" and basics["Family"] == "Education" and basics["IsActive"]
    by_book = {(e["Pricebook2"]["Name"], e["CurrencyIsoCode"]): e for e in _entries(basics)}
    assert set(by_book) == {
        ("Standard Price Book", "USD"),
        ("Standard Price Book", "EUR"),
        ("Professional Services", "USD"),
        ("Professional Services", "EUR"),
    }
    assert by_book["Standard Price Book", "USD"]["UnitPrice"] == 7000.0
    assert by_book["Standard Price Book", "EUR"]["UnitPrice"] == 6440.0
    assert by_book["Professional Services", "USD"]["UseStandardPrice"] is True
    assert by_book["Professional Services", "USD"]["Pricebook2"]["IsStandard"] is False
    assert "GL-PREMIUM-SAAS" not in products  # a subscription, filtered out by Family


def test_the_seeded_gaps() -> None:
    products = _products(_backend())
    assert _entries(products["GL-RR-SELF"]) == []  # not in any price book
    assert products["GL-RR-COM"]["IsActive"] is False  # active in Zuora
    migration = {e["Pricebook2"]["Name"]: e["UnitPrice"] for e in _entries(products["MIG+"])}
    assert migration == {"Standard Price Book": 33000.0, "Professional Services": 33000.0}  # Zuora: 35000
    assert {e["Pricebook2"]["Name"] for e in _entries(products["GL-ENGR-3"])} == {"Standard Price Book"}
    assert [e["IsActive"] for e in _entries(products["GL-ENGR-6"]) if e["CurrencyIsoCode"] == "EUR"] == [False, False]
    assert products["GL-PM"]["IsActive"] and all(e["IsActive"] for e in _entries(products["GL-PM"]))  # Zuora ended it
    assert "PS-ZUORA-ONLY" not in products


def test_single_currency_org_has_no_currency_iso_code() -> None:
    backend = _backend(multi_currency=False)
    with pytest.raises(SalesforceError, match="No such column 'CurrencyIsoCode' on entity 'PricebookEntry'") as error:
        backend.query(PS_QUERY, False, None, "59.0")
    assert error.value.code == "INVALID_FIELD"
    products = _products(backend, PS_QUERY.replace(", CurrencyIsoCode", ""))
    entries = _entries(products["GL-BAS"])
    assert len(entries) == 2 and all("CurrencyIsoCode" not in e for e in entries)  # USD only, one per book
    assert "CurrencyIsoCode" not in {f["name"] for f in backend.describe("PricebookEntry")["fields"]}


def test_price_book_children_page_like_other_child_relationships() -> None:
    backend = _backend(child_page_size=2)
    page = backend.query(PS_QUERY, False, None, "59.0")
    basics = next(r for r in page["records"] if r["ProductCode"] == "GL-BAS")
    assert basics["PricebookEntries"]["done"] is False and len(basics["PricebookEntries"]["records"]) == 2
    rest = backend.query_more(basics["PricebookEntries"]["nextRecordsUrl"].rsplit("/", 1)[1], False, "59.0")
    assert rest["done"] and len(rest["records"]) == 2


def test_custom_price_book_entry_needs_a_standard_price() -> None:
    backend = _backend()
    page = backend.query("SELECT Id, Name FROM Pricebook2", False, None, "59.0")
    books = {r["Name"]: r["Id"] for r in page["records"]}
    product = backend.create("Product2", {"Name": "New PS offering", "ProductCode": "GL-NEW", "IsActive": True})
    custom = {"Pricebook2Id": books["Professional Services"], "Product2Id": product, "UnitPrice": 100.0}
    with pytest.raises(SalesforceError) as error:
        backend.create("PricebookEntry", {**custom, "CurrencyIsoCode": "USD"})
    assert error.value.code == "STANDARD_PRICE_NOT_DEFINED"
    standard = {"Pricebook2Id": books["Standard Price Book"], "Product2Id": product, "CurrencyIsoCode": "USD"}
    backend.create("PricebookEntry", {**standard, "UnitPrice": 150.0, "IsActive": True})
    entry_id = backend.create("PricebookEntry", {**custom, "CurrencyIsoCode": "USD", "UseStandardPrice": True})
    entry = backend.get("PricebookEntry", entry_id)
    assert (entry["UnitPrice"], entry["Name"], entry["ProductCode"]) == (150.0, "New PS offering", "GL-NEW")
    with pytest.raises(SalesforceError) as error:
        backend.update("PricebookEntry", entry_id, {"Product2Id": product})
    assert error.value.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceError) as error:
        backend.create("Pricebook2", {"Name": "Another standard", "IsStandard": True})
    assert error.value.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
