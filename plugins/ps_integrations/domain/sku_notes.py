"""The texts of the reconciliation's rows: prices, quoted SKUs, where an entry is, and the details
of SKUs spelled differently or used twice. Pure."""

from __future__ import annotations

from decimal import Decimal

from ps_integrations.domain.services_catalog import ServiceEntry
from ps_integrations.domain.zuora_catalog import ZuoraProduct


def money(value: Decimal | None) -> str:
    """A price as text: two decimals, or every decimal when it has more (never rounded away)."""
    if value is None:
        return ""
    cents = value.quantize(Decimal("0.01"))
    return format(cents if cents == value else value.normalize(), "f")


def quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def entry_where(entry: ServiceEntry) -> str:
    return f"services.yml id {entry.id}" + (f", line {entry.line}" if entry.line else "")


def spelling_places(service: list[ServiceEntry], products: list[ZuoraProduct]) -> list[str]:
    """Every spelling of the group's SKU with where it comes from, when there is more than one."""
    written = {entry.written_sku for entry in service} | {product.sku or "" for product in products}
    if len(written) < 2:
        return []
    places = [
        f"{quote(entry.written_sku)} in services.yml (id {entry.id}"
        + (f", line {entry.sku_line or entry.line}" if entry.sku_line or entry.line else "")
        + (f", column {entry.sku_column}" if entry.sku_column else "")
        + ")"
        for entry in service
    ] + [f"{quote(product.sku or '')} in Zuora (product {product.id})" for product in products]
    return places


def duplicate_note(service: list[ServiceEntry], products: list[ZuoraProduct], currency: str) -> str:
    parts = []
    if len(service) > 1:
        parts.append(
            f"{len(service)} services.yml entries: "
            + "; ".join(
                f"{entry_where(e)} ({money(e.price) + ' ' + e.currency if e.price is not None else 'no price'})"
                for e in service
            )
        )
    if len(products) > 1:
        parts.append(
            f"{len(products)} Zuora products: "
            + "; ".join(
                f"{p.id} {quote(p.name)} ("
                + (", ".join(money(price.amount) for price in p.active_prices.get(currency, ())) or "no price")
                + (f" {currency})" if p.active_prices.get(currency) else ")")
                for p in products
            )
        )
    return "SKU used by " + " and ".join(parts)


def duplicate_id_note(group: tuple[ServiceEntry, ...]) -> str:
    places = []
    for entry in group:
        place = f"line {entry.line}" if entry.line else "unknown line"
        if entry.alias_of_line:
            place += f" (an alias of the entry at line {entry.alias_of_line})"
        places.append(place)
    return f"services.yml id {group[0].id} is used by {len(group)} entries: " + ", ".join(places)
