"""Zuora's product catalog joined from its four objects. Pure: records in, products out.

ZOQL has no joins, so ``Product``, ``ProductRatePlan``, ``ProductRatePlanCharge`` and
``ProductRatePlanChargeTier`` arrive as separate record lists and are joined here. A product or rate
plan is active on ``as_of`` when start <= as_of < end. Zuora promises no record order, so every
output is sorted on ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class ZuoraPrice:
    amount: Decimal
    rate_plan_id: str
    tier_id: str


@dataclass(frozen=True)
class IncompleteRecord:
    """A first-tier price record of an active rate plan that lacks a price or a currency."""

    tier_id: str
    charge_id: str
    rate_plan_id: str
    missing: str  # "Price", "Currency" or "Price and Currency"
    currency: str | None

    def describe(self) -> str:
        return (
            f"Zuora ProductRatePlanChargeTier {self.tier_id} (charge {self.charge_id}, rate plan "
            f"{self.rate_plan_id}) has no {self.missing}"
        )


@dataclass(frozen=True)
class ZuoraProduct:
    id: str
    name: str
    sku: str | None  # exactly as Zuora returns it
    start: date | None
    end: date | None
    # currency -> first-tier prices of the product's rate plans active on as_of, by amount and id
    active_prices: dict[str, tuple[ZuoraPrice, ...]]
    rate_plans: int
    incomplete: tuple[IncompleteRecord, ...] = ()


def _as_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def active(start: date | None, end: date | None, as_of: date) -> bool:
    return (start is None or start <= as_of) and (end is None or as_of < end)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _amount(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _first_tier(tier: Any) -> bool:
    if tier is None or tier == "":
        return True
    try:
        return Decimal(str(tier)) == 1
    except InvalidOperation:
        return False


def join_zuora_catalog(
    products: Iterable[dict[str, Any]],
    plans: Iterable[dict[str, Any]],
    charges: Iterable[dict[str, Any]],
    tiers: Iterable[dict[str, Any]],
    as_of: date,
) -> list[ZuoraProduct]:
    """Products (by id) with the first-tier prices of their active rate plans, by currency."""
    plan_count: dict[str, int] = defaultdict(int)
    active_plan_product: dict[str, str] = {}
    for plan in plans:
        product_id = _text(plan.get("ProductId"))
        plan_count[product_id] += 1
        if active(_as_date(plan.get("EffectiveStartDate")), _as_date(plan.get("EffectiveEndDate")), as_of):
            active_plan_product[_text(plan.get("Id"))] = product_id
    charge_plan = {_text(charge.get("Id")): _text(charge.get("ProductRatePlanId")) for charge in charges}
    prices: dict[str, dict[str, list[ZuoraPrice]]] = defaultdict(lambda: defaultdict(list))
    incomplete: dict[str, list[IncompleteRecord]] = defaultdict(list)
    for tier in tiers:
        if not _first_tier(tier.get("Tier")):
            continue
        charge_id = _text(tier.get("ProductRatePlanChargeId"))
        plan_id = charge_plan.get(charge_id)
        owner = active_plan_product.get(plan_id) if plan_id is not None else None
        if owner is None or plan_id is None:
            continue
        currency: str | None = _text(tier.get("Currency")).strip().upper() or None
        amount = _amount(tier.get("Price"))
        tier_id = _text(tier.get("Id"))
        if currency is None or amount is None:
            missing = " and ".join(name for name, value in (("Price", amount), ("Currency", currency)) if value is None)
            incomplete[owner].append(IncompleteRecord(tier_id, charge_id, plan_id, missing, currency))
            continue
        prices[owner][currency].append(ZuoraPrice(amount, plan_id, tier_id))
    joined = []
    for product in products:
        product_id = _text(product.get("Id"))
        sku = product.get("SKU")
        joined.append(
            ZuoraProduct(
                id=product_id,
                name=_text(product.get("Name")),
                sku=None if sku is None or not str(sku).strip() else str(sku),
                start=_as_date(product.get("EffectiveStartDate")),
                end=_as_date(product.get("EffectiveEndDate")),
                active_prices={
                    currency: tuple(sorted(values, key=lambda p: (p.amount, p.rate_plan_id, p.tier_id)))
                    for currency, values in sorted(prices.get(product_id, {}).items())
                },
                rate_plans=plan_count.get(product_id, 0),
                incomplete=tuple(sorted(incomplete.get(product_id, ()), key=lambda r: (r.tier_id, r.missing))),
            )
        )
    return sorted(joined, key=lambda p: p.id)
