"""SKU reconciliation: the Zuora product catalog against services.yml. Pure: data in, rows out.

Zuora's products arrive joined (``domain.zuora_catalog``). Output: one row per SKU,
currency, services.yml entry and Zuora product (so two products on one SKU show both prices, one
value per cell), with a primary status, every problem found, an action saying which system to
change (Zuora is upstream: services.yml follows Zuora; a SKU Zuora lacks needs a finance SKU
request), and both sides' values. Every output is independent of the order records arrive in:
Zuora promises no order, so everything is sorted on ids before it is used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

from ps_integrations.domain.services_catalog import InvalidEntry, ServiceEntry
from ps_integrations.domain.sku_notes import (
    duplicate_id_note,
    duplicate_note,
    money,
    quote,
    spelling_places,
)
from ps_integrations.domain.zuora_catalog import IncompleteRecord, ZuoraPrice, ZuoraProduct, active

# Most severe first; a row's status is the most severe of its problems.
STATUSES = (
    "invalid_services_yml_entry",
    "sku_needs_quotes",
    "sku_spelling_differs",
    "duplicate_services_yml_id",
    "duplicate_sku",
    "no_sku",
    "incomplete_in_zuora",
    "missing_in_zuora",
    "missing_in_services_yml",
    "retired_in_zuora",
    "not_yet_effective",
    "no_price_in_zuora",
    "price_mismatch",
    "name_mismatch",
    "not_compared",
    "match",
)
SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}
# statuses that need nobody to do anything
NO_ACTION = frozenset({"not_compared", "match"})

GLOSSARY = {
    "invalid_services_yml_entry": "A services.yml entry that cannot be read (e.g. a price that is not an amount). "
    "Fix the entry in services.yml.",
    "sku_needs_quotes": "An unquoted SKU in services.yml that YAML reads as something else (0755 becomes 493, "
    "12:30 becomes 750, NO becomes false). Put the SKU in quotes in services.yml.",
    "sku_spelling_differs": "The same SKU written differently (surrounding spaces or upper/lower case) in "
    "services.yml and Zuora, or twice within one of them. Nothing is merged: every spelling is quoted with where "
    "it comes from. services.yml follows Zuora's spelling.",
    "duplicate_services_yml_id": "One services.yml id is used by more than one entry. Give each entry its own id.",
    "duplicate_sku": "One SKU on more than one services.yml entry or more than one Zuora product. Each is listed "
    "on its own row with its own price.",
    "no_sku": "A services.yml entry without a SKU: it cannot be matched to Zuora.",
    "incomplete_in_zuora": "A Zuora price record (ProductRatePlanChargeTier) of an active rate plan without a "
    "price or currency; the record ids and the missing field are named. Finance completes it in Zuora.",
    "missing_in_zuora": "services.yml offers a SKU that Zuora does not have. Finance creates it through a SKU "
    "request (or services.yml drops it if it is no longer sold).",
    "missing_in_services_yml": "A SKU in Zuora (active or starting later) that services.yml does not list. "
    "services.yml adds it.",
    "retired_in_zuora": "services.yml offers a product whose Zuora product has ended.",
    "not_yet_effective": "services.yml offers a product whose Zuora product starts after the as_of date.",
    "no_price_in_zuora": "The Zuora product is active but has no active price in this currency.",
    "price_mismatch": "Both sides have a price in this currency and they differ. services.yml follows Zuora.",
    "name_mismatch": "The names differ (ignoring case and spacing). services.yml follows Zuora.",
    "not_compared": "Zuora has a price in this currency but services.yml has no price in it (e.g. Zuora's EUR "
    "price when services.yml lists only USD): nothing to compare, nothing to do.",
    "match": "SKU, name and price agree.",
}


ROW_KEYS = (
    "sku",
    "currency",
    "status",
    "action",
    "services_yml_price",
    "zuora_price",
    "difference",
    "problems",
    "details",
    "services_yml_id",
    "services_yml_name",
    "services_yml_category",
    "services_yml_line",
    "zuora_product_id",
    "zuora_name",
    "zuora_effective_start",
    "zuora_effective_end",
    "zuora_rate_plan_id",
    "zuora_rate_plans",
)


class Row:
    """One reconciliation row, read like a mapping (``row["status"]``). Slots, not a dict: at
    30,000 rows a dict per row was most of the job's memory."""

    __slots__ = ROW_KEYS

    def __init__(self, **values: Any) -> None:
        for key in ROW_KEYS:
            setattr(self, key, values[key])

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and all(self[key] == other[key] for key in ROW_KEYS)

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        return {key: self[key] for key in ROW_KEYS}

    def __repr__(self) -> str:
        return f"Row({self.as_dict()!r})"


@lru_cache(maxsize=4096)
def _iso(day: date | None) -> str:
    """ISO text of a date, one string object per date (rows repeat the same few dates)."""
    return day.isoformat() if day else ""


# --- reconciling ------------------------------------------------------------------------------------


def sku_key(sku: str) -> str:
    """What two spellings of one SKU have in common: no surrounding spaces, case folded."""
    return sku.strip().casefold()


def _same_name(left: str, right: str) -> bool:
    return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()


@dataclass(frozen=True)
class _Context:
    as_of: date
    duplicated_ids: dict[str, tuple[ServiceEntry, ...]]
    # one string object per distinct text: notes like "services.yml's price is in USD, not EUR" repeat
    texts: dict[str, str]


def reconcile(
    entries: Sequence[ServiceEntry],
    zuora: Sequence[ZuoraProduct],
    as_of: date,
    invalid: Sequence[InvalidEntry] = (),
) -> list[Row]:
    """The reconciliation rows, most severe first, then by SKU, currency and ids."""
    entries = sorted(entries, key=lambda e: (e.line or 0, e.id, e.written_sku))
    by_id: dict[str, list[ServiceEntry]] = defaultdict(list)
    for entry in entries:
        by_id[entry.id].append(entry)
    context = _Context(as_of, {key: tuple(group) for key, group in by_id.items() if len(group) > 1}, {})
    rows = [_invalid_row(item) for item in invalid]
    service_groups: dict[str, list[ServiceEntry]] = defaultdict(list)
    for entry in entries:
        if entry.sku:
            service_groups[sku_key(entry.sku)].append(entry)
        else:
            rows.append(_row(context, entry.currency, entry, None, ["no_sku"], [], None, False))
    product_groups: dict[str, list[ZuoraProduct]] = defaultdict(list)
    for product in sorted(zuora, key=lambda p: p.id):
        if product.sku:
            product_groups[sku_key(product.sku)].append(product)
    for key in sorted(set(service_groups) | set(product_groups)):
        rows.extend(_group_rows(context, service_groups.get(key, []), product_groups.get(key, [])))
    return sorted(rows, key=sort_key)


def sort_key(row: Row) -> tuple:
    return (
        SEVERITY[row["status"]],
        sku_key(row["sku"]),
        row["sku"],
        row["currency"],
        row["services_yml_id"],
        row["services_yml_line"] or 0,
        row["zuora_product_id"],
    )


def _group_rows(context: _Context, service: list[ServiceEntry], products: list[ZuoraProduct]) -> list[Row]:
    spellings = spelling_places(service, products)
    rows = []
    group_problems = []
    if spellings:
        group_problems.append("sku_spelling_differs")
    if len(service) > 1 or len(products) > 1:
        group_problems.append("duplicate_sku")
    service_side: list[ServiceEntry | None] = list(service) or [None]
    zuora_side: list[ZuoraProduct | None] = list(products) or [None]
    for entry in service_side:
        for product in zuora_side:
            if entry is None and product is not None and not _offered(product, context.as_of):
                continue  # retired in Zuora and not in services.yml: nothing for anyone to do
            for currency in _currencies(entry, product, context.as_of):
                problems = list(group_problems)
                notes = []
                if spellings:
                    notes.append("SKU written differently: " + "; ".join(spellings))
                if len(service) > 1 or len(products) > 1:
                    notes.append(duplicate_note(service, products, currency))
                rows.append(_row(context, currency, entry, product, problems, notes, spellings, len(products) > 1))
    return rows


def _offered(product: ZuoraProduct, as_of: date) -> bool:
    return active(product.start, product.end, as_of) or (product.start is not None and product.start > as_of)


def _currencies(entry: ServiceEntry | None, product: ZuoraProduct | None, as_of: date) -> list[str]:
    found = set()
    if entry is not None:
        found.add(entry.currency)
    if product is not None:
        if active(product.start, product.end, as_of):
            found.update(product.active_prices)
        found.update(record.currency for record in product.incomplete if record.currency)
    return sorted(found) or [""]


def _row(
    context: _Context,
    currency: str,
    entry: ServiceEntry | None,
    product: ZuoraProduct | None,
    problems: list[str],
    notes: list[str],
    spellings: list[str] | None,
    several_products: bool,
) -> Row:
    as_of = context.as_of
    problems = list(problems)
    notes = list(notes)
    service_price = entry.price if entry is not None and entry.currency == currency else None
    offered: tuple[ZuoraPrice, ...] = ()
    shown: ZuoraPrice | None = None
    if entry is not None and entry.sku_coerced_to:
        problems.append("sku_needs_quotes")
        notes.insert(
            0,
            f"services.yml line {entry.sku_line}, column {entry.sku_column}: the unquoted SKU {entry.raw_sku} is "
            f"read by YAML as {entry.sku_coerced_to}; it was reconciled as the text {quote(entry.written_sku)}",
        )
    if entry is not None and entry.id in context.duplicated_ids:
        problems.append("duplicate_services_yml_id")
        notes.append(duplicate_id_note(context.duplicated_ids[entry.id]))
    incomplete: list[IncompleteRecord] = []
    if product is not None:
        incomplete = [r for r in product.incomplete if r.currency in (None, currency)]
        if incomplete:
            problems.append("incomplete_in_zuora")
            notes.extend(record.describe() for record in incomplete)
    if entry is not None and product is None:
        problems.append("missing_in_zuora")
    if product is not None and entry is None:
        problems.append("missing_in_services_yml")
    if product is not None:
        live = active(product.start, product.end, as_of)
        offered = product.active_prices.get(currency, ()) if live else ()
        shown = offered[0] if len(offered) == 1 else None
        if entry is not None and product.end is not None and product.end <= as_of:
            problems.append("retired_in_zuora")
            notes.append(f"Zuora product {product.id} ended on {product.end.isoformat()}")
        if entry is not None and product.start is not None and product.start > as_of:
            problems.append("not_yet_effective")
            notes.append(f"Zuora product {product.id} starts on {product.start.isoformat()}")
        if entry is not None and live:
            if len(offered) > 1:
                notes.append(
                    f"Zuora product {product.id} has {len(offered)} active {currency} prices: "
                    + ", ".join(f"{money(p.amount)} (rate plan {p.rate_plan_id})" for p in offered)
                )
            if not offered:
                if not incomplete and (service_price is not None or entry.price is None):
                    problems.append("no_price_in_zuora")
                    notes.append(f"Zuora product {product.id} has no active {currency} price")
            elif service_price is None:
                problems.append("not_compared")
                notes.append(
                    "services.yml states no price"
                    if entry.price is None
                    else f"services.yml's price is in {entry.currency}, not {currency}"
                )
            else:
                same = [p for p in offered if p.amount == service_price]
                if same:
                    shown = same[0]
                else:
                    problems.append("price_mismatch")
            if not _same_name(entry.name, product.name):
                problems.append("name_mismatch")
    ordered = sorted(set(problems), key=SEVERITY.__getitem__)
    status = ordered[0] if ordered else "match"
    sku = (product.sku if product is not None else entry.written_sku if entry is not None else None) or ""
    difference = service_price - shown.amount if service_price is not None and shown is not None else None
    row = Row(
        **{
            "sku": sku,
            "currency": currency,
            "status": status,
            "action": "",
            "services_yml_price": service_price,
            "zuora_price": shown.amount if shown is not None else None,
            "difference": difference,
            "problems": "; ".join(ordered) if len(ordered) > 1 else status,
            "details": context.texts.setdefault(details, details) if (details := "; ".join(notes)) else "",
            "services_yml_id": entry.id if entry is not None else "",
            "services_yml_name": entry.name if entry is not None else "",
            "services_yml_category": (entry.category or "") if entry is not None else "",
            "services_yml_line": entry.line if entry is not None else None,
            "zuora_product_id": product.id if product is not None else "",
            "zuora_name": product.name if product is not None else "",
            "zuora_effective_start": _iso(product.start) if product is not None else "",
            "zuora_effective_end": _iso(product.end) if product is not None else "",
            "zuora_rate_plan_id": shown.rate_plan_id if shown is not None else "",
            "zuora_rate_plans": product.rate_plans if product is not None else None,
        }
    )
    row["action"] = action_for(row, entry, product, offered, incomplete, several_products)
    return row


def _invalid_row(item: InvalidEntry) -> Row:
    return Row(
        **{
            "sku": "",
            "currency": "",
            "status": "invalid_services_yml_entry",
            "action": f"services.yml: fix entry {item.entry_id}"
            + (f" at line {item.line}" if item.line else "")
            + f" ({item.reason})",
            "services_yml_price": None,
            "zuora_price": None,
            "difference": None,
            "problems": "invalid_services_yml_entry",
            "details": item.describe(),
            "services_yml_id": item.entry_id,
            "services_yml_name": "",
            "services_yml_category": "",
            "services_yml_line": item.line,
            "zuora_product_id": "",
            "zuora_name": "",
            "zuora_effective_start": "",
            "zuora_effective_end": "",
            "zuora_rate_plan_id": "",
            "zuora_rate_plans": None,
        }
    )


def action_for(
    row: Row,
    entry: ServiceEntry | None,
    product: ZuoraProduct | None,
    offered: tuple[ZuoraPrice, ...],
    incomplete: list[IncompleteRecord],
    several_products: bool,
) -> str:
    """Which system to change and how, for the row's status (Zuora is upstream of services.yml)."""
    status, currency, sku = row["status"], row["currency"], row["sku"]
    where = f"entry {entry.id}" + (f" (line {entry.line})" if entry.line else "") if entry is not None else "the entry"
    if status == "sku_needs_quotes" and entry is not None:
        return (
            f"services.yml: quote the SKU at line {entry.sku_line}, column {entry.sku_column}: "
            f"sku: {quote(entry.written_sku)}"
        )
    if status == "sku_spelling_differs":
        if product is not None and entry is not None and (entry.written_sku) != (product.sku or ""):
            return f"services.yml: write the SKU of {where} exactly as Zuora does: {quote(product.sku or '')}"
        if several_products:
            return (
                "Finance: Zuora has SKUs that differ only by spaces or case; keep one through a finance SKU "
                "request, then services.yml follows"
            )
        return f"services.yml: write the SKU of {where} the same way in every entry"
    if status == "duplicate_services_yml_id" and entry is not None:
        return f"services.yml: give {where} an id of its own ({entry.id} is used more than once)"
    if status == "duplicate_sku":
        if several_products and entry is not None:
            return (
                f"Finance: Zuora has several products with SKU {sku}; retire or re-SKU all but one through a "
                "finance SKU request, then services.yml follows"
            )
        if several_products:
            return f"Finance: Zuora has several products with SKU {sku}; keep one through a finance SKU request"
        return f"services.yml: one entry per SKU; several entries use {sku}"
    if status == "no_sku":
        return f"services.yml: add the Zuora SKU to {where}; if Zuora has no SKU for it, file a finance SKU request"
    if status == "incomplete_in_zuora":
        records = ", ".join(f"{r.tier_id} (no {r.missing})" for r in incomplete)
        return f"Finance: complete the price record(s) in Zuora: ProductRatePlanChargeTier {records}"
    if status == "missing_in_zuora":
        return f"Finance: file a SKU request to create {sku} in Zuora (or drop {where} from services.yml if not sold)"
    if status == "missing_in_services_yml" and product is not None:
        return f"services.yml: add an entry for SKU {sku} ({quote(product.name)}, Zuora product {product.id})"
    if status == "retired_in_zuora" and product is not None and product.end is not None:
        return (
            f"services.yml: stop offering {where} (Zuora ended it on {product.end.isoformat()}); if it is still "
            "sold, file a finance SKU request to extend it in Zuora"
        )
    if status == "not_yet_effective" and product is not None and product.start is not None:
        return (
            f"services.yml: do not sell {where} before {product.start.isoformat()} (Zuora's start), or ask "
            "finance to move the start date in Zuora"
        )
    if status == "no_price_in_zuora":
        return (
            f"Finance: add a {currency} price to the Zuora product through a finance SKU request, or remove the "
            f"{currency} price from services.yml"
        )
    if status == "price_mismatch":
        prices = " or ".join(money(p.amount) for p in offered)
        return (
            f"services.yml: change the {currency} price of {where} from {money(row['services_yml_price'])} to "
            f"{prices} (Zuora's price)"
        )
    if status == "name_mismatch" and product is not None:
        return f"services.yml: rename {where} to {quote(product.name)} (Zuora's name)"
    if status == "not_compared":
        return "Nothing to do: services.yml states no price in this currency"
    return ""


def status_counts(rows: list[Row]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row["status"]] += 1
    return counts


def needs_action(row: Row) -> bool:
    return row["status"] not in NO_ACTION


class ProblemKey(NamedTuple):
    """One problem of one SKU (or services.yml id) and currency, as runs are compared over time."""

    item: str  # the SKU, or "id:<services.yml id>" for an entry without one
    currency: str
    problem: str


def problem_keys(rows: list[Row]) -> set[ProblemKey]:
    """Every problem of the rows, to compare runs over time."""
    keys = set()
    for row in rows:
        for problem in row["problems"].split("; "):
            if problem not in NO_ACTION:
                keys.add(ProblemKey(row["sku"] or f"id:{row['services_yml_id']}", row["currency"], problem))
    return keys
