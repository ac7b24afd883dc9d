"""SalesforceHook.price_book_products against the Salesforce stand-in (issue #19)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from ps_integrations.hooks.salesforce import SalesforceHook

USER = {"username": "integration@ps.example.com", "password": "sandbox-password", "security_token": "SANDBOXTOKEN"}
PS_FAMILIES = ("Education", "Integration", "Implementation", "Migration", "Consulting")
GENERATE = {"opportunities": 10, "random_seed": 7, "end_date": "2026-11-01"}


@pytest.fixture
def salesforce(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(sandbox.airflow_connections()["salesforce_default"])
    )
    return sandbox


def _seed(sandbox, **salesforce):
    sandbox.load_seed({**sandbox.seed, "salesforce": {"users": [USER], "generate": GENERATE, **salesforce}})


def test_ps_products_with_standard_and_ps_price_book_entries(salesforce):
    _seed(salesforce)
    read = SalesforceHook().price_book_products(PS_FAMILIES, price_book="Professional Services")
    products = {product.code: product for product in read.products}
    assert read.multi_currency and read.pages == 1 and read.child_pages == 0
    assert len(products) == 28  # 27 services.yml SKUs + the legacy package; no subscriptions, no code-less SOW
    assert "GL-PREMIUM-SAAS" not in products and "PS-LEGACY-MIG" in products
    basics = products["GL-BAS"]
    assert (basics.name, basics.active, basics.family) == ("GitLab with Git Basics Training", True, "Education")
    prices = {(e.price_book_name, e.currency): (e.unit_price, e.active, e.standard) for e in basics.entries}
    assert prices == {
        ("Standard Price Book", "USD"): (Decimal("7000.0"), True, True),
        ("Standard Price Book", "EUR"): (Decimal("6440.0"), True, True),
        ("Professional Services", "USD"): (Decimal("7000.0"), True, False),
        ("Professional Services", "EUR"): (Decimal("6440.0"), True, False),
    }
    assert products["GL-RR-SELF"].entries == ()
    assert not products["GL-RR-COM"].active
    assert [e.price_book_name for e in products["GL-ENGR-3"].entries] == ["Standard Price Book"]


def test_standard_price_book_only_when_no_ps_price_book_is_configured(salesforce):
    _seed(salesforce)
    read = SalesforceHook().price_book_products(PS_FAMILIES)
    assert {e.price_book_name for p in read.products for e in p.entries} == {"Standard Price Book"}


def test_pages_of_products_and_of_entries_are_read_whole(salesforce):
    _seed(salesforce)
    whole = SalesforceHook().price_book_products(PS_FAMILIES, price_book="Professional Services")
    _seed(salesforce, page_size=10, child_page_size=3)
    hook = SalesforceHook()
    paged = hook.price_book_products(PS_FAMILIES, price_book="Professional Services")
    assert paged.pages > 2 and paged.child_pages > 0  # products and a product's entries both paged
    assert paged.products == whole.products  # nothing lost or repeated at a page boundary
    # API calls: one describe, then only the query's own pages
    assert salesforce.standin("salesforce").backend.api_usage == 1 + paged.pages + paged.child_pages


def test_single_currency_org(salesforce):
    _seed(salesforce, multi_currency=False)
    read = SalesforceHook().price_book_products(PS_FAMILIES, price_book="Professional Services")
    assert not read.multi_currency
    basics = next(p for p in read.products if p.code == "GL-BAS")
    assert [(e.price_book_name, e.currency, e.unit_price) for e in basics.entries] == [
        ("Standard Price Book", None, Decimal("7000.0")),
        ("Professional Services", None, Decimal("7000.0")),
    ]
