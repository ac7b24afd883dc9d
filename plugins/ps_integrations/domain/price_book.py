"""Salesforce's price book as the SKU reconciliation's third system. Pure: records in, decisions out.

The PS handbook's SKU process: finance creates the SKU in Zuora (SKU request), the product goes into
the Salesforce catalog and price book, someone validates that it shows in Salesforce (a test quote
lists it under "Professional Services and Training"), then services.yml is updated. Zuora is
upstream of both Salesforce and services.yml. Given the reconciliation rows (Zuora vs services.yml),
the Zuora catalog and the Salesforce products with their price book entries, each row gains
Salesforce's side: sellable or not, Salesforce's price in the row's currency, a status, the action
and the SKU-process step that is missing. A product Zuora has retired that services.yml no longer
offers has no reconciliation row; if Salesforce still sells it, it gets a row of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ps_integrations.domain.sku_notes import money
from ps_integrations.domain.sku_reconciliation import ROW_KEYS, Row, needs_action, sku_key, sort_key
from ps_integrations.domain.zuora_catalog import ZuoraProduct

# --- records in (what SalesforceHook.price_book_products returns) ------------------------------------


@dataclass(frozen=True)
class PriceBookEntry:
    """A product's list price in one price book (and currency: None in a single-currency org)."""

    id: str
    price_book_id: str
    price_book_name: str
    standard: bool
    price_book_active: bool
    unit_price: Decimal | None
    active: bool
    use_standard_price: bool
    currency: str | None


@dataclass(frozen=True)
class SalesforceProduct:
    id: str
    code: str
    name: str
    active: bool
    family: str | None
    entries: tuple[PriceBookEntry, ...]


@dataclass(frozen=True)
class PriceBookRead:
    products: tuple[SalesforceProduct, ...]
    multi_currency: bool
    pages: int = 1
    child_pages: int = 0


# --- statuses ------------------------------------------------------------------------------------------

# Most severe first.
SALESFORCE_STATUSES = (
    "inactive_in_salesforce",
    "not_sellable_in_salesforce",
    "sellable_but_retired_in_zuora",
    "price_differs_in_salesforce",
    "not_compared",
    "match",
)
SALESFORCE_SEVERITY = {status: rank for rank, status in enumerate(SALESFORCE_STATUSES)}
SALESFORCE_NO_ACTION = frozenset({"not_compared", "match"})
SALESFORCE_GLOSSARY = {
    "inactive_in_salesforce": "Zuora sells the product but its Salesforce Product2 is inactive. Sales operations "
    "activates it in Salesforce.",
    "not_sellable_in_salesforce": "Zuora sells the product in this currency but Salesforce cannot: no product with "
    "this code, or no active entry in the price book in this currency (or the price book is inactive). Sales "
    "operations adds it to the catalog and the price book.",
    "sellable_but_retired_in_zuora": "Zuora has ended the product but Salesforce still sells it. Sales operations "
    "deactivates it in Salesforce (or finance extends it in Zuora if it is still sold).",
    "price_differs_in_salesforce": "Salesforce's list price in this currency differs from Zuora's. Sales operations "
    "sets Zuora's price in the price book.",
    "not_compared": "Nothing to compare: Zuora does not sell it in this currency now (missing, not yet effective, "
    "or no price in this currency), or a single-currency org has no price in another currency.",
    "match": "Salesforce agrees with Zuora: sellable at Zuora's price, or neither sells it.",
}

# The PS handbook's SKU process, in order: which step a problem says is missing.
SKU_PROCESS_STEPS = {
    "sku_request": "1. SKU request: finance creates the product and its price in Zuora",
    "salesforce_catalog": "2. Product in the Salesforce catalog and the price book",
    "validate_in_salesforce": "3. Validate the SKU shows in Salesforce (a test quote lists it under Professional "
    "Services and Training)",
    "services_yml": "4. Update services.yml",
}
STEP_OF_SALESFORCE_STATUS = {
    "inactive_in_salesforce": "salesforce_catalog",
    "not_sellable_in_salesforce": "salesforce_catalog",
    "sellable_but_retired_in_zuora": "salesforce_catalog",
    "price_differs_in_salesforce": "salesforce_catalog",
}


@dataclass(frozen=True)
class PriceBookSettings:
    """Which price book sells PS products (None: the standard one) and the currency of a single-currency org."""

    price_book: str | None = None
    org_currency: str = "USD"
    multi_currency: bool = True


@dataclass(frozen=True)
class SalesforceSide:
    """Salesforce's side of one reconciliation row."""

    status: str
    action: str
    step: str  # key of SKU_PROCESS_STEPS, "" when nothing is missing
    sellable: bool
    price: Decimal | None
    price_book: str
    product_id: str
    product_name: str
    details: str

    @property
    def needs_action(self) -> bool:
        return self.status not in SALESFORCE_NO_ACTION

    @property
    def step_text(self) -> str:
        return SKU_PROCESS_STEPS.get(self.step, "")


@dataclass(frozen=True)
class RetiredButSellable:
    """A Zuora product that has ended, which services.yml no longer offers, still sellable in Salesforce."""

    sku: str
    currency: str
    zuora: ZuoraProduct
    salesforce: SalesforceSide


@dataclass(frozen=True)
class PriceBookOutcome:
    sides: tuple[SalesforceSide, ...]  # one per reconciliation row, in the rows' order
    retired_but_sellable: tuple[RetiredButSellable, ...]


@dataclass(frozen=True)
class FinanceItem:
    """What services.yml cannot fix, for the finance issue: the problem and the missing SKU-process step."""

    sku: str
    currency: str
    problem: str
    step: str
    action: str

    @property
    def step_text(self) -> str:
        return SKU_PROCESS_STEPS[self.step]


# --- deciding ----------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def _offered_now(product: ZuoraProduct, as_of: date) -> bool:
    return (product.start is None or product.start <= as_of) and (product.end is None or as_of < product.end)


def _retired(product: ZuoraProduct, as_of: date) -> bool:
    return product.end is not None and product.end <= as_of


@dataclass(frozen=True)
class _Offer:
    """What Salesforce offers of one product in one currency through the selling price book."""

    product: SalesforceProduct
    entry: PriceBookEntry | None
    book: str

    @property
    def sellable(self) -> bool:
        return self.product.active and self.entry is not None and self.entry.active and self.entry.price_book_active

    @property
    def price(self) -> Decimal | None:
        return self.entry.unit_price if self.entry is not None else None


class PriceBook:
    """The Salesforce products by SKU, read through the selling price book."""

    def __init__(self, products: Sequence[SalesforceProduct], settings: PriceBookSettings) -> None:
        self.settings = settings
        self.by_sku: dict[str, list[SalesforceProduct]] = defaultdict(list)
        for product in sorted(products, key=lambda p: (p.code, p.id)):
            if product.code.strip():
                self.by_sku[sku_key(product.code)].append(product)

    @property
    def book_name(self) -> str:
        return self.settings.price_book or "the standard price book"

    def _in_book(self, entry: PriceBookEntry) -> bool:
        if self.settings.price_book:
            return entry.price_book_name == self.settings.price_book
        return entry.standard

    def _currency_of(self, entry: PriceBookEntry) -> str:
        return (entry.currency or "") if self.settings.multi_currency else self.settings.org_currency

    def offer(self, sku: str, currency: str) -> tuple[_Offer | None, int]:
        """The best offer for the SKU in the currency ("" = any), and how many products carry the SKU."""
        products = self.by_sku.get(sku_key(sku), [])
        offers = []
        for product in products:
            entries = [e for e in product.entries if self._in_book(e) and currency in ("", self._currency_of(e))]
            entries.sort(key=lambda e: (not (e.active and e.price_book_active), e.id))
            offers.append(_Offer(product, entries[0] if entries else None, self.book_name))
        offers.sort(key=lambda o: (not o.sellable, not o.product.active, o.product.id))
        return (offers[0] if offers else None), len(products)

    def currency_unknown_to_org(self, currency: str) -> bool:
        return not self.settings.multi_currency and currency not in ("", self.settings.org_currency)


def add_salesforce(
    rows: Sequence[Row],
    zuora: Sequence[ZuoraProduct],
    products: Sequence[SalesforceProduct],
    as_of: date,
    settings: PriceBookSettings,
) -> PriceBookOutcome:
    """Salesforce's side of every reconciliation row, plus the products Zuora retired that Salesforce sells."""
    book = PriceBook(products, settings)
    zuora_by_id = {product.id: product for product in zuora}
    sides = tuple(
        salesforce_side(row["sku"], row["currency"], zuora_by_id.get(row["zuora_product_id"]), row, book, as_of)
        for row in rows
    )
    covered = {row["zuora_product_id"] for row in rows if row["zuora_product_id"]}
    extra = []
    for product in sorted(zuora, key=lambda p: p.id):
        if product.id in covered or not product.sku or not _retired(product, as_of):
            continue
        offer, _count = book.offer(product.sku, "")
        if offer is None or not offer.sellable:
            continue
        currency = _currency_of_offer(offer, settings)
        side = salesforce_side(product.sku, currency, product, None, book, as_of)
        extra.append(RetiredButSellable(product.sku, currency, product, side))
    return PriceBookOutcome(sides, tuple(extra))


def _currency_of_offer(offer: _Offer, settings: PriceBookSettings) -> str:
    if offer.entry is None:
        return ""
    return (offer.entry.currency or "") if settings.multi_currency else settings.org_currency


def salesforce_side(
    sku: str, currency: str, zuora: ZuoraProduct | None, row: Row | None, book: PriceBook, as_of: date
) -> SalesforceSide:
    """Salesforce's side of one SKU and currency against the Zuora product of the row (if any)."""
    offer, count = book.offer(sku, currency) if sku else (None, 0)
    notes = []
    if count > 1:
        notes.append(f"{count} Salesforce products have ProductCode {_quote(sku)}; the most sellable one is shown")
    status, action = _decide(sku, currency, zuora, row, offer, book, as_of, notes)
    return SalesforceSide(
        status=status,
        action=action,
        step=STEP_OF_SALESFORCE_STATUS.get(status, ""),
        sellable=bool(offer and offer.sellable),
        price=offer.price if offer is not None and offer.sellable else None,
        price_book=offer.entry.price_book_name if offer is not None and offer.entry is not None else "",
        product_id=offer.product.id if offer is not None else "",
        product_name=offer.product.name if offer is not None else "",
        details="; ".join(notes),
    )


def _zuora_prices(zuora: ZuoraProduct, currency: str, row: Row | None) -> list[Decimal]:
    shown = row["zuora_price"] if row is not None else None
    if shown is not None:
        return [shown]
    return [price.amount for price in zuora.active_prices.get(currency, ())]


def _decide(
    sku: str,
    currency: str,
    zuora: ZuoraProduct | None,
    row: Row | None,
    offer: _Offer | None,
    book: PriceBook,
    as_of: date,
    notes: list[str],
) -> tuple[str, str]:
    in_currency = f" in {currency}" if currency else ""
    if zuora is None:
        if offer is not None and offer.sellable:
            notes.append("Zuora has no product with this SKU; Salesforce sells it")
        return "not_compared", ""
    if _retired(zuora, as_of):
        if offer is not None and offer.sellable:
            end = zuora.end.isoformat() if zuora.end else ""
            notes.append(f"Zuora product {zuora.id} ended on {end}")
            return "sellable_but_retired_in_zuora", (
                f"Sales operations (Salesforce): deactivate product {sku} ({offer.product.id}) or its entry in "
                f"{book.book_name}: Zuora ended it on {end}; if it is still sold, file a finance SKU request to "
                "extend it in Zuora"
            )
        return "match", ""
    if not _offered_now(zuora, as_of):
        return "not_compared", ""
    zuora_prices = _zuora_prices(zuora, currency, row)
    if book.currency_unknown_to_org(currency):
        notes.append(f"a single-currency org ({book.settings.org_currency}) has no {currency} prices")
        return "not_compared", ""
    if currency and not zuora_prices:
        return "not_compared", ""  # Zuora has no price in this currency: nothing Salesforce should follow
    target = " or ".join(money(price) for price in zuora_prices)
    at_price = f" at {target} {currency}" if target and currency else ""
    if offer is None:
        notes.append(f"no Salesforce product has ProductCode {_quote(sku)}")
        return "not_sellable_in_salesforce", (
            f"Sales operations (Salesforce): create product {sku} ({_quote(zuora.name)}) and add it to "
            f"{book.book_name}{at_price}, then validate the SKU shows in Salesforce"
        )
    if not offer.product.active:
        return "inactive_in_salesforce", (
            f"Sales operations (Salesforce): activate product {sku} ({offer.product.id}); Zuora sells it"
        )
    if not offer.sellable:
        reason = _why_not_sellable(offer, in_currency)
        notes.append(reason)
        return "not_sellable_in_salesforce", (
            f"Sales operations (Salesforce): {reason}: add or activate the entry of {sku}{at_price}, then "
            "validate the SKU shows in Salesforce"
        )
    if zuora_prices and offer.price not in zuora_prices:
        return "price_differs_in_salesforce", (
            f"Sales operations (Salesforce): change the {currency} list price of {sku} in "
            f"{offer.entry.price_book_name if offer.entry else book.book_name} from {money(offer.price)} to "
            f"{target} (Zuora's price)"
        )
    return "match", ""


def _why_not_sellable(offer: _Offer, in_currency: str) -> str:
    if offer.entry is None:
        return f"product {offer.product.id} has no entry in {offer.book}{in_currency}"
    if not offer.entry.price_book_active:
        return f"price book {_quote(offer.entry.price_book_name)} is inactive"
    return f"the entry {offer.entry.id} in {_quote(offer.entry.price_book_name)}{in_currency} is inactive"


# --- for the finance issue -----------------------------------------------------------------------------


def finance_items(rows: Sequence[Row], outcome: PriceBookOutcome) -> list[FinanceItem]:
    """Everything services.yml cannot fix, with the step of the SKU process that is missing."""
    items = []
    for row, side in zip(rows, outcome.sides, strict=True):
        if row["action"].startswith("Finance"):  # the reconciliation's own finance actions: Zuora needs a change
            sku = row["sku"] or f"id:{row['services_yml_id']}"
            items.append(FinanceItem(sku, row["currency"], row["status"], "sku_request", row["action"]))
        if side.needs_action:
            items.append(FinanceItem(row["sku"], row["currency"], side.status, side.step, side.action))
    for extra in outcome.retired_but_sellable:
        side = extra.salesforce
        items.append(FinanceItem(extra.sku, extra.currency, side.status, side.step, side.action))
    unique = {(item.sku, item.currency, item.problem): item for item in items}
    return sorted(unique.values(), key=lambda i: (i.step, sku_key(i.sku), i.currency, i.problem))


def salesforce_counts(outcome: PriceBookOutcome) -> dict[str, int]:
    counts = dict.fromkeys(SALESFORCE_STATUSES, 0)
    for side in outcome.sides:
        counts[side.status] += 1
    for extra in outcome.retired_but_sellable:
        counts[extra.salesforce.status] += 1
    return counts


# --- rows with Salesforce's side, for the export, the issue and the mail --------------------------------

SALESFORCE_KEYS = (
    "salesforce_status",
    "salesforce_action",
    "salesforce_sellable",
    "salesforce_price",
    "salesforce_price_book",
    "salesforce_product_id",
    "sku_process_step",
    "salesforce_details",
)


class PriceBookRow(Row):
    """A reconciliation row with Salesforce's side (empty when Salesforce is not read)."""

    __slots__ = SALESFORCE_KEYS

    def __init__(self, **values: object) -> None:
        super().__init__(**{key: values[key] for key in ROW_KEYS})
        for key in SALESFORCE_KEYS:
            setattr(self, key, values.get(key, None if key == "salesforce_price" else ""))


def _side_values(side: SalesforceSide | None) -> dict[str, object]:
    if side is None:
        return {}
    return {
        "salesforce_status": side.status,
        "salesforce_action": side.action,
        "salesforce_sellable": "yes" if side.sellable else "no",
        "salesforce_price": side.price,
        "salesforce_price_book": side.price_book,
        "salesforce_product_id": side.product_id,
        "sku_process_step": side.step_text,
        "salesforce_details": side.details,
    }


def _retired_row(extra: RetiredButSellable) -> dict[str, object]:
    product = extra.zuora
    end = product.end.isoformat() if product.end else ""
    return {
        **dict.fromkeys(ROW_KEYS, ""),
        "sku": extra.sku,
        "currency": extra.currency,
        "status": "not_compared",
        "problems": "not_compared",
        "details": f"Zuora product {product.id} ended on {end}; services.yml does not offer it",
        "services_yml_price": None,
        "zuora_price": None,
        "difference": None,
        "services_yml_line": None,
        "zuora_product_id": product.id,
        "zuora_name": product.name,
        "zuora_effective_start": product.start.isoformat() if product.start else "",
        "zuora_effective_end": end,
        "zuora_rate_plans": product.rate_plans,
    }


def rows_with_salesforce(rows: Sequence[Row], outcome: PriceBookOutcome | None) -> list[Row]:
    """The rows with Salesforce's columns (empty without an outcome), plus a row for each product Zuora
    retired that Salesforce still sells; in the reconciliation's order."""
    if outcome is None:
        return [PriceBookRow(**row.as_dict()) for row in rows]
    combined: list[Row] = [
        PriceBookRow(**row.as_dict(), **_side_values(side)) for row, side in zip(rows, outcome.sides, strict=True)
    ]
    combined += [
        PriceBookRow(**_retired_row(extra), **_side_values(extra.salesforce)) for extra in outcome.retired_but_sellable
    ]
    return sorted(combined, key=sort_key)


def needs_any_action(row: Row) -> bool:
    """Whether anyone must act on the row: in Zuora or services.yml, or in Salesforce."""
    status = getattr(row, "salesforce_status", "")
    return needs_action(row) or bool(status and status not in SALESFORCE_NO_ACTION)
