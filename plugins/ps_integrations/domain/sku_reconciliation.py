"""SKU reconciliation: the Zuora product catalog against services.yml. Pure: data in, rows out.

ZOQL has no joins, so the four Zuora objects arrive as separate record lists and are joined here
(pandas). A product or rate plan is active on ``as_of`` when start <= as_of < end. Output: one row
per SKU and currency (entries without a SKU: one row per services.yml id) with a primary status,
every problem found, and both sides' values so finance can act without opening either system.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from ps_integrations.domain.services_catalog import ServiceEntry

# Most severe first; a row's status is the most severe of its problems.
STATUSES = (
    "duplicate_sku",
    "no_sku",
    "missing_in_zuora",
    "missing_in_services_yml",
    "retired_in_zuora",
    "not_yet_effective",
    "price_mismatch",
    "name_mismatch",
    "match",
)
SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}


@dataclass(frozen=True)
class ZuoraProduct:
    id: str
    name: str
    sku: str | None
    start: date | None
    end: date | None
    # currency -> first-tier prices of the product's rate plans active on as_of
    active_prices: dict[str, tuple[Decimal, ...]]
    rate_plans: int


def _as_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _active(start: date | None, end: date | None, as_of: date) -> bool:
    return (start is None or start <= as_of) and (end is None or as_of < end)


def join_zuora_catalog(
    products: list[dict[str, Any]],
    plans: list[dict[str, Any]],
    charges: list[dict[str, Any]],
    tiers: list[dict[str, Any]],
    as_of: date,
) -> list[ZuoraProduct]:
    """Products with the first-tier price of each active rate plan, by currency."""
    import pandas as pd

    plan_frame = pd.DataFrame(plans, columns=["Id", "ProductId", "EffectiveStartDate", "EffectiveEndDate"])
    charge_frame = pd.DataFrame(charges, columns=["Id", "ProductRatePlanId"])
    tier_frame = pd.DataFrame(tiers, columns=["Id", "ProductRatePlanChargeId", "Currency", "Price", "Tier"])
    plan_count = plan_frame.groupby("ProductId").size().to_dict() if len(plan_frame) else {}
    day = pd.Timestamp(as_of)
    starts = pd.to_datetime(plan_frame["EffectiveStartDate"].astype("string").str[:10], errors="coerce")
    ends = pd.to_datetime(plan_frame["EffectiveEndDate"].astype("string").str[:10], errors="coerce")
    active_plans = plan_frame[(starts.isna() | (starts <= day)) & (ends.isna() | (day < ends))]
    first_tiers = tier_frame[(tier_frame["Tier"].isna()) | (tier_frame["Tier"].astype("float") == 1)]
    joined = (
        active_plans[["Id", "ProductId"]]
        .rename(columns={"Id": "PlanId"})
        .merge(charge_frame.rename(columns={"Id": "ChargeId", "ProductRatePlanId": "PlanId"}), on="PlanId")
        .merge(
            first_tiers.rename(columns={"ProductRatePlanChargeId": "ChargeId"})[["ChargeId", "Currency", "Price"]],
            on="ChargeId",
        )
    )
    prices: dict[str, dict[str, set[Decimal]]] = defaultdict(lambda: defaultdict(set))
    for product_id, currency, price in zip(joined["ProductId"], joined["Currency"], joined["Price"], strict=True):
        if currency and price is not None:
            prices[product_id][str(currency)].add(Decimal(str(price)))
    return [
        ZuoraProduct(
            id=str(product["Id"]),
            name=str(product.get("Name") or ""),
            sku=(str(product["SKU"]).strip() or None) if product.get("SKU") else None,
            start=_as_date(product.get("EffectiveStartDate")),
            end=_as_date(product.get("EffectiveEndDate")),
            active_prices={
                currency: tuple(sorted(values))
                for currency, values in sorted(prices.get(str(product["Id"]), {}).items())
            },
            rate_plans=int(plan_count.get(product["Id"], 0)),
        )
        for product in products
    ]


def _same_name(left: str, right: str) -> bool:
    return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()


def _money(value: Decimal | None) -> str:
    return "" if value is None else format(value.quantize(Decimal("0.01")), "f")


def reconcile(entries: list[ServiceEntry], zuora: list[ZuoraProduct], as_of: date) -> list[dict[str, Any]]:
    """The reconciliation rows, sorted by SKU (or id) and currency."""
    by_sku: dict[str, list[ServiceEntry]] = defaultdict(list)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        if entry.sku:
            by_sku[entry.sku].append(entry)
        else:
            rows.append(_row(None, entry.currency, [entry], [], ["no_sku"], as_of))
    products_by_sku: dict[str, list[ZuoraProduct]] = defaultdict(list)
    for product in zuora:
        if product.sku:
            products_by_sku[product.sku].append(product)
    for sku in sorted(set(by_sku) | set(products_by_sku)):
        service = by_sku.get(sku, [])
        products = products_by_sku.get(sku, [])
        live = [p for p in products if _active(p.start, p.end, as_of)]
        future = [p for p in products if p.start is not None and p.start > as_of]
        retired = [p for p in products if p.end is not None and p.end <= as_of]
        currencies = {entry.currency for entry in service} | {c for p in live for c in p.active_prices}
        for currency in sorted(currencies or {"USD"}):
            problems = []
            if len(service) > 1 or len(products) > 1:
                problems.append("duplicate_sku")
            if service and not products:
                problems.append("missing_in_zuora")
            if products and not service:
                if live or future:
                    problems.append("missing_in_services_yml")
                else:
                    continue  # retired in Zuora and not offered: nothing for finance to do
            if service and products and not live and not future and retired:
                problems.append("retired_in_zuora")
            if service and products and not live and future:
                problems.append("not_yet_effective")
            priced = [entry for entry in service if entry.price is not None and entry.currency == currency]
            if priced and products:
                offered = {price for p in live for price in p.active_prices.get(currency, ())}
                if live and any(entry.price not in offered for entry in priced):
                    problems.append("price_mismatch")
            if service and live and not any(_same_name(entry.name, p.name) for entry in service for p in live):
                problems.append("name_mismatch")
            rows.append(_row(sku, currency, service, products, problems, as_of))
    return sorted(rows, key=lambda row: (row["sku"] or "", row["services_yml_id"], row["currency"]))


def _row(
    sku: str | None,
    currency: str,
    service: list[ServiceEntry],
    products: list[ZuoraProduct],
    problems: list[str],
    as_of: date,
) -> dict[str, Any]:
    ordered = sorted(set(problems), key=SEVERITY.__getitem__)
    live = [p for p in products if _active(p.start, p.end, as_of)]
    prices = sorted({price for p in live for price in p.active_prices.get(currency, ())})
    return {
        "sku": sku or "",
        "currency": currency,
        "status": ordered[0] if ordered else "match",
        "problems": "; ".join(ordered),
        "services_yml_id": "; ".join(entry.id for entry in service),
        "services_yml_name": "; ".join(entry.name for entry in service),
        "services_yml_category": "; ".join(sorted({entry.category or "" for entry in service} - {""})),
        "services_yml_price": "; ".join(
            _money(entry.price) for entry in service if entry.currency == currency and entry.price is not None
        ),
        "zuora_product_id": "; ".join(p.id for p in products),
        "zuora_name": "; ".join(p.name for p in products),
        "zuora_active_prices": "; ".join(_money(price) for price in prices),
        "zuora_effective_start": "; ".join(p.start.isoformat() if p.start else "" for p in products),
        "zuora_effective_end": "; ".join(p.end.isoformat() if p.end else "" for p in products),
        "zuora_rate_plans": sum(p.rate_plans for p in products),
    }


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row["status"]] += 1
    return counts


def problem_keys(rows: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(sku or services.yml id, currency, problem) for every problem, to compare runs over time."""
    keys = set()
    for row in rows:
        for problem in filter(None, row["problems"].split("; ")):
            keys.add((row["sku"] or f"id:{row['services_yml_id']}", row["currency"], problem))
    return keys
