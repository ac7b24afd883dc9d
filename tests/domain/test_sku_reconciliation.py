"""Reconciliation rules and services.yml reading, on hand-made data and the real file."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from ps_integrations.domain.services_catalog import CatalogSyntaxError, ServiceEntry, parse_price, parse_services_yml
from ps_integrations.domain.sku_reconciliation import GLOSSARY, STATUSES, reconcile, status_counts
from ps_integrations.domain.zuora_catalog import join_zuora_catalog
from sandbox.reference import SERVICES_YML

AS_OF = date(2026, 11, 21)


def product(sku, name="Svc", start="2020-01-01", end="2099-12-31", prices=(("USD", "100"),), key=None):
    key = key or sku
    records = {
        "Product": [{"Id": f"p-{key}", "Name": name, "SKU": sku, "EffectiveStartDate": start, "EffectiveEndDate": end}]
    }
    records["ProductRatePlan"] = [
        {"Id": f"rp-{key}-{c}", "ProductId": f"p-{key}", "EffectiveStartDate": start, "EffectiveEndDate": end}
        for c, _ in prices
    ]
    records["ProductRatePlanCharge"] = [{"Id": f"c-{key}-{c}", "ProductRatePlanId": f"rp-{key}-{c}"} for c, _ in prices]
    records["ProductRatePlanChargeTier"] = [
        {"Id": f"t-{key}-{c}", "ProductRatePlanChargeId": f"c-{key}-{c}", "Currency": c, "Price": Decimal(p), "Tier": 1}
        for c, p in prices
    ]
    return records


def rows_for(entries, *products):
    merged = {"Product": [], "ProductRatePlan": [], "ProductRatePlanCharge": [], "ProductRatePlanChargeTier": []}
    for records in products:
        for name, items in records.items():
            merged[name].extend(items)
    joined = join_zuora_catalog(
        merged["Product"],
        merged["ProductRatePlan"],
        merged["ProductRatePlanCharge"],
        merged["ProductRatePlanChargeTier"],
        AS_OF,
    )
    return reconcile(entries, joined, AS_OF)


def entry(id_, sku, name="Svc", price="100", currency="USD"):
    return ServiceEntry(id=id_, name=name, sku=sku, price=Decimal(price) if price else None, currency=currency)


@pytest.mark.parametrize(
    ("entries", "products", "status"),
    [
        ([entry("a", "A")], [product("A")], "match"),
        ([entry("a", "A"), entry("b", "A")], [product("A")], "duplicate_sku"),
        ([entry("a", "A")], [product("A"), product("A", key="A2")], "duplicate_sku"),
        ([entry("a", None)], [], "no_sku"),
        ([entry("a", "A")], [], "missing_in_zuora"),
        ([], [product("A")], "missing_in_services_yml"),
        ([entry("a", "A")], [product("A", end="2025-06-30")], "retired_in_zuora"),
        ([entry("a", "A")], [product("A", start="2027-01-01")], "not_yet_effective"),
        ([entry("a", "A", price="120")], [product("A")], "price_mismatch"),
        ([entry("a", "A")], [product("A", prices=())], "no_price_in_zuora"),
        ([entry("a", "A", name="Other")], [product("A")], "name_mismatch"),
        ([entry("a", "A", name="  svc ")], [product("A")], "match"),
        ([entry("a", "A", price="")], [product("A", prices=(("USD", "999"),))], "not_compared"),
        ([entry("a", "A", price="5", currency="EUR")], [product("A", prices=(("EUR", "5"),))], "match"),
    ],
)
def test_each_status(entries, products, status):
    rows = rows_for(entries, *products)
    assert {row["status"] for row in rows} == {status}
    assert len(rows) == len(entries or [None]) * len(products or [None])  # one row per entry and product


def test_price_matches_any_active_plan_in_the_entrys_currency_and_rows_split_by_currency():
    rows = rows_for([entry("a", "A", price="90")], product("A", prices=(("USD", "100"), ("EUR", "90"))))
    assert [(row["currency"], row["status"], row["zuora_price"]) for row in rows] == [
        ("USD", "price_mismatch", Decimal("100")),
        ("EUR", "not_compared", Decimal("90")),  # services.yml states a USD price only
    ]
    euro = rows_for([entry("a", "A", price="90", currency="EUR")], product("A", prices=(("EUR", "90"),)))
    assert [row["status"] for row in euro] == ["match"]


def test_a_row_lists_every_problem_most_severe_first():
    rows = rows_for([entry("a", "A", name="X", price="5"), entry("b", "A", name="Y", price="5")], product("A"))
    assert [row["services_yml_id"] for row in rows] == ["a", "b"]  # one row per entry, nothing merged
    assert {row["problems"] for row in rows} == {"duplicate_sku; price_mismatch; name_mismatch"}
    assert {row["status"] for row in rows} == {"duplicate_sku"}


def test_retired_plan_prices_are_not_active():
    records = product("A", prices=(("USD", "100"),))
    records["ProductRatePlan"][0]["EffectiveEndDate"] = "2025-01-01"
    [row] = rows_for([entry("a", "A")], records)
    assert row["status"] == "no_price_in_zuora" and row["zuora_price"] is None


def test_real_services_yml_quirks():
    catalog = parse_services_yml(SERVICES_YML.read_text(encoding="utf-8"), "services.yml")
    by_id = {}
    for item in catalog.entries:
        by_id.setdefault(item.id, []).append(item)
    assert catalog.invalid == ()
    assert len(catalog.entries) == 31
    assert by_id["Expertise-Services"][0].price == Decimal("14400")  # "$14,400"
    assert by_id["training_sessions_basics"][0].price == Decimal("7000")  # integer
    assert by_id["training_sessions_admin"][0].sku is None  # sku: #TODO reads as null
    assert by_id["health-check"][0].sku is None  # no sku key at all
    assert [e.sku for e in by_id["Dedicated-12"]] == ["GL-ENGR-12", "GL-ENGR-CLEARED-12"]  # duplicated id
    assert by_id["training_sessions_pm"][0].price is None
    assert all(item.line for item in catalog.entries)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (35000, (Decimal("35000"), None)),
        ("$14,400", (Decimal("14400"), "USD")),
        ("14400 EUR", (Decimal("14400"), "EUR")),
        ("€1,000.50", (Decimal("1000.50"), "EUR")),
        (None, (None, None)),
    ],
)
def test_prices(value, expected):
    assert parse_price(value) == expected


def test_yaml_syntax_error_names_file_line_and_column():
    with pytest.raises(CatalogSyntaxError) as raised:
        parse_services_yml("- id: a\n  name: [unclosed\n- id: b\n", "data/services.yml")
    assert (raised.value.line, raised.value.column) == (3, 5)
    assert str(raised.value).startswith("data/services.yml: YAML syntax error at line 3, column 5")


def test_bad_entries_are_reported_by_id_and_the_rest_go_on():
    catalog = parse_services_yml(
        "- id: ok\n  sku: A\n  price: 5\n- just text\n- id: bad\n  price: lots\n- name: no id\n"
    )
    assert [e.id for e in catalog.entries] == ["ok"]
    assert [(i.entry_id, i.line) for i in catalog.invalid] == [("#2", 4), ("bad", 5), ("#4", 7)]
    assert "price 'lots' is not an amount" in catalog.invalid[1].describe()


def test_counts_cover_every_status():
    counts = status_counts(rows_for([entry("a", "A")], product("A")))
    assert counts["match"] == 1 and sum(counts.values()) == 1 and len(counts) == len(STATUSES) == 16
    assert set(GLOSSARY) == set(STATUSES)


def tier_records(price="100", currency="USD"):
    records = product("A")
    records["ProductRatePlanChargeTier"][0].update(Price=price, Currency=currency)
    return records


@pytest.mark.parametrize(
    ("price", "currency", "missing"),
    [(None, "USD", "Price"), ("100", None, "Currency"), (None, "", "Price and Currency"), ("NaN", "USD", "Price")],
)
def test_incomplete_zuora_records_name_the_record_and_the_missing_field(price, currency, missing):
    [row] = rows_for([entry("a", "A")], tier_records(price, currency))
    assert row["status"] == "incomplete_in_zuora" and row["currency"] == "USD"
    assert (
        f"Zuora ProductRatePlanChargeTier t-A-USD (charge c-A-USD, rate plan rp-A-USD) has no {missing}"
        in (row["details"])
    )
    assert (
        row["action"]
        == f"Finance: complete the price record(s) in Zuora: ProductRatePlanChargeTier t-A-USD (no {missing})"
    )
    assert not re.search(r"\b(nan|none)\b", row["details"] + row["action"], re.IGNORECASE)
    assert row["zuora_price"] is None


def test_skus_differing_by_case_or_spaces_are_never_merged_silently():
    spaced = ServiceEntry(id="a", name="Svc", sku="A ", raw_sku="A ", price=Decimal(100), line=3, sku_line=5)
    [row] = rows_for([spaced], product("a"))
    assert row["status"] == "sku_spelling_differs" and row["sku"] == "a"
    assert row["details"].startswith(
        'SKU written differently: "A " in services.yml (id a, line 5); "a" in Zuora (product p-a)'
    )
    assert row["action"] == 'services.yml: write the SKU of entry a (line 3) exactly as Zuora does: "a"'
    # two Zuora products differing only by case: both rows, both spellings, nothing dropped
    rows = rows_for([], product("B", key="1"), product("b ", key="2"))
    assert [(row["sku"], row["status"]) for row in rows] == [
        ("B", "sku_spelling_differs"),
        ("b ", "sku_spelling_differs"),
    ]


def test_two_zuora_products_on_one_sku_show_every_price():
    rows = rows_for(
        [entry("a", "A", price="100")], product("A", key="1"), product("A", key="2", prices=(("USD", "120"),))
    )
    assert [(row["zuora_product_id"], row["zuora_price"], row["difference"]) for row in rows] == [
        ("p-1", Decimal("100"), Decimal("0")),
        ("p-2", Decimal("120"), Decimal("-20")),
    ]
    assert all("100.00 USD" in row["details"] and "120.00 USD" in row["details"] for row in rows)


def test_output_does_not_depend_on_record_order():
    import random

    records = [product("A"), product("B", prices=(("USD", "5"), ("EUR", "4"))), product("A", key="A2")]
    merged = {name: [item for r in records for item in r[name]] for name in records[0]}
    entries = [entry("a", "A"), entry("b", "B", price="6"), entry("c", "C")]
    expected = rows_for(entries, *records)
    for seed in range(5):
        shuffled = {name: random.Random(seed).sample(items, len(items)) for name, items in merged.items()}
        joined = join_zuora_catalog(
            shuffled["Product"],
            shuffled["ProductRatePlan"],
            shuffled["ProductRatePlanCharge"],
            shuffled["ProductRatePlanChargeTier"],
            AS_OF,
        )
        assert reconcile(random.Random(seed).sample(entries, len(entries)), joined, AS_OF) == expected


def test_rows_sort_by_severity_then_sku():
    rows = rows_for([entry("z", "Z"), entry("b", "B", price="1"), entry("n", None)], product("Z"), product("B"))
    assert [(row["status"], row["sku"]) for row in rows] == [
        ("no_sku", ""),
        ("price_mismatch", "B"),
        ("match", "Z"),
    ]


YAML_QUIRKS = """- &base
  id: dup
  name: Base
  sku: GL-BASE
- *base
- id: octal
  sku: 0755
- id: clock
  sku: 12:30
- id: norway
  sku:   NO
- id: fine
  sku: 12345
"""


def test_yaml_aliases_and_coerced_skus_are_reported_where_they_are_written():
    catalog = parse_services_yml(YAML_QUIRKS)
    by_id = {}
    for item in catalog.entries:
        by_id.setdefault(item.id, []).append(item)
    assert [(e.line, e.alias_of_line) for e in by_id["dup"]] == [(1, None), (5, 1)]
    assert [(e.sku, e.sku_line, e.sku_column, e.sku_coerced_to) for e in catalog.entries[2:]] == [
        ("0755", 7, 8, "the number 493"),
        ("12:30", 9, 8, "the number 750"),
        ("NO", 11, 10, "the boolean false"),
        ("12345", 13, 8, None),  # read as a number but the text is the same: nothing to report
    ]
    rows = reconcile(list(catalog.entries), [], AS_OF)
    quoted = [row for row in rows if row["status"] == "sku_needs_quotes"]
    assert [row["sku"] for row in quoted] == ["0755", "12:30", "NO"]
    assert quoted[0]["action"] == 'services.yml: quote the SKU at line 7, column 8: sku: "0755"'
    assert quoted[0]["details"].startswith(
        "services.yml line 7, column 8: the unquoted SKU 0755 is read by YAML as the number 493"
    )
    dup = [row for row in rows if row["status"] == "duplicate_services_yml_id"]
    assert dup and all(
        "services.yml id dup is used by 2 entries: line 1, line 5 (an alias of the entry at line 1)" in row["details"]
        for row in dup
    )


def test_invalid_entries_become_rows():
    catalog = parse_services_yml("- id: ok\n  sku: A\n  price: 5\n- id: bad\n  price: lots\n")
    rows = reconcile(list(catalog.entries), [], AS_OF, catalog.invalid)
    assert rows[0]["status"] == "invalid_services_yml_entry" and rows[0]["services_yml_line"] == 4
    assert rows[0]["action"] == "services.yml: fix entry bad at line 4 (price 'lots' is not an amount)"
