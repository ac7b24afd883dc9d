"""The Zuora part of a seed: a product catalog built from the real services.yml, with drift.

Section format (all keys optional)::

    zuora:
      users: [{username, password}]
      locator_ttl_seconds: 900
      record_order_seed: 0         # query answers come in a random order drawn from this seed
      concurrency_limit: 20        # concurrent requests before 429 REQUEST_EXCEEDED_LIMIT
      catalog: services_yml        # build the catalog from the real services.yml (default)
      generate_products: 0         # or N synthetic products (3 rate plans each) for benchmarks
      records: {Product: [...], ...}   # explicit records, stored as given

Every services.yml entry with a SKU becomes a Product (effective 2020-01-01 to 2099-12-31) with a
"List Price" rate plan in USD whose one-time flat-fee charge has one tier at the catalog price;
every third product also has an EUR plan. The drift finance must see:

- ``GL-MIG-GITHUB``-style retired product: the 4th SKU ends 2025-06-30 although services.yml offers it;
- one product not yet effective (the 5th SKU starts 2027-01-01);
- one renamed product (the 6th SKU's Name differs from services.yml);
- one price that differs (the 7th SKU's USD tier is 10% higher);
- a SKU only in Zuora (``PS-ZUORA-ONLY``);
- two products sharing a SKU (the 8th SKU appears twice);
- a product with no rate plan (the 9th SKU);
- a SKU services.yml offers that Zuora does not have (the 10th);
- an incomplete price record: the 11th SKU's USD tier has no Price;
- a price record without a currency: the 12th SKU has a second rate plan whose tier has no Currency;
- a SKU spelled in another case in Zuora (the 13th SKU, lower case);
- the duplicated 8th SKU's second product is priced 5% higher, so both prices must show.

Records are answered in a seeded random order (``record_order_seed``), as real Zuora promises no order.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sandbox.reference import price_of, services

START = date(2020, 1, 1)
END = date(2099, 12, 31)
CREATED = datetime(2020, 1, 1, 8, 0, tzinfo=UTC)


def zuora_id(*parts: Any) -> str:
    """A 32-hex-character id like Zuora's, stable for the same parts."""
    return hashlib.md5("/".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def build_catalog(seed: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    catalog: dict[str, list[dict[str, Any]]] = {
        "Product": [],
        "ProductRatePlan": [],
        "ProductRatePlanCharge": [],
        "ProductRatePlanChargeTier": [],
    }
    if seed.get("catalog", "services_yml") == "services_yml":
        _from_services(catalog)
    if seed.get("generate_products"):
        synthetic(catalog, int(seed["generate_products"]))
    for zobject, rows in (seed.get("records") or {}).items():
        catalog[zobject].extend(dict(row) for row in rows)
    return catalog


def add_product(
    catalog: dict[str, list[dict[str, Any]]],
    key: str,
    name: str,
    sku: str | None,
    category: str | None,
    prices: dict[str, Decimal],
    start: date = START,
    end: date = END,
    description: str | None = None,
) -> str:
    product_id = zuora_id("product", key)
    catalog["Product"].append(
        {
            "Id": product_id,
            "Name": name,
            "SKU": sku,
            "Category": category,
            "Description": description,
            "EffectiveStartDate": start,
            "EffectiveEndDate": end,
            "CreatedDate": CREATED,
            "UpdatedDate": CREATED,
        }
    )
    for currency, price in prices.items():
        plan_id = zuora_id("plan", key, currency)
        catalog["ProductRatePlan"].append(
            {
                "Id": plan_id,
                "ProductId": product_id,
                "Name": f"List Price {currency}",
                "EffectiveStartDate": start,
                "EffectiveEndDate": end,
                "ActiveCurrencies": currency,
            }
        )
        charge_id = zuora_id("charge", key, currency)
        catalog["ProductRatePlanCharge"].append(
            {
                "Id": charge_id,
                "ProductRatePlanId": plan_id,
                "Name": name,
                "ChargeModel": "Flat Fee Pricing",
                "ChargeType": "OneTime",
                "UOM": "Each",
                "DefaultQuantity": Decimal(1),
            }
        )
        catalog["ProductRatePlanChargeTier"].append(
            {
                "Id": zuora_id("tier", key, currency),
                "ProductRatePlanChargeId": charge_id,
                "Currency": currency,
                "Price": price,
                "Tier": 1,
                "StartingUnit": Decimal(0),
                "PriceFormat": "Flat Fee",
                "IsOveragePrice": False,
            }
        )
    return product_id


def _from_services(catalog: dict[str, list[dict[str, Any]]]) -> None:
    entries = [entry for entry in services() if entry.get("sku")]
    for index, entry in enumerate(entries):
        usd = Decimal(price_of(entry) or 10000)
        prices = {"USD": usd}
        if index % 3 == 0:
            prices["EUR"] = (usd * Decimal("0.92")).quantize(Decimal("1"))
        name, start, end = entry["name"], START, END
        if index == 3:
            end = date(2025, 6, 30)  # retired in Zuora, still offered in services.yml
        if index == 4:
            start = date(2027, 1, 1)  # not yet effective
        if index == 5:
            name = f"{name} (2025 edition)"  # renamed in Zuora
        if index == 6:
            prices["USD"] = (usd * Decimal("1.10")).quantize(Decimal("1"))  # price drifted
        if index == 8:
            prices = {}  # a product nobody gave a rate plan
        if index == 9:
            continue  # offered in services.yml, never set up in Zuora
        sku = entry["sku"].lower() if index == 12 else entry["sku"]  # spelled in another case in Zuora
        product_id = add_product(
            catalog,
            entry["sku"],
            name,
            sku,
            entry.get("category"),
            prices,
            start,
            end,
            entry.get("short_desc"),
        )
        if index == 7:
            higher = (usd * Decimal("1.05")).quantize(Decimal("1"))
            add_product(
                catalog,
                f"{entry['sku']}-dup",
                f"{name} (duplicate)",
                entry["sku"],
                entry.get("category"),
                {"USD": higher},
            )
        if index == 10:
            catalog["ProductRatePlanChargeTier"][-1]["Price"] = None  # a USD tier nobody priced
        if index == 11:
            _plan_without_currency(catalog, entry["sku"], product_id)
    add_product(
        catalog, "zuora-only", "Legacy Advisory Retainer", "PS-ZUORA-ONLY", "Consulting", {"USD": Decimal(12000)}
    )


def _plan_without_currency(catalog: dict[str, list[dict[str, Any]]], key: str, product_id: str) -> None:
    plan_id, charge_id = zuora_id("plan", key, "promo"), zuora_id("charge", key, "promo")
    catalog["ProductRatePlan"].append(
        {"Id": plan_id, "ProductId": product_id, "Name": "Promo", "EffectiveStartDate": START, "EffectiveEndDate": END}
    )
    catalog["ProductRatePlanCharge"].append(
        {"Id": charge_id, "ProductRatePlanId": plan_id, "Name": "Promo", "ChargeModel": "Flat Fee Pricing"}
    )
    catalog["ProductRatePlanChargeTier"].append(
        {"Id": zuora_id("tier", key, "promo"), "ProductRatePlanChargeId": charge_id, "Price": Decimal(500), "Tier": 1}
    )


def synthetic(catalog: dict[str, list[dict[str, Any]]], products: int) -> None:
    """N products with 3 rate plans each (USD, EUR, GBP), for benchmarks."""
    for number in range(products):
        sku = f"BENCH-{number:06d}"
        price = Decimal(1000 + (number * 37) % 50000)
        add_product(
            catalog,
            sku,
            f"Benchmark Service {number}",
            sku,
            "Consulting",
            {"USD": price, "EUR": price * Decimal("0.9"), "GBP": price * Decimal("0.8")},
        )
