"""The Salesforce hook's composite reads (issues #16, #19, #20, #21): opportunity budgets and contacts,
record links, PS products with their price book entries - typed records out. A mixin of
``SalesforceHook``: its methods take ``self: SalesforceTransport`` (what they need of the hook)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Protocol

from ps_integrations.domain.price_book import PriceBookEntry, PriceBookRead, SalesforceProduct
from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.hooks.salesforce_records import (
    SOQL_FIELD,
    OpportunityBudget,
    OpportunityContacts,
    OpportunityLine,
    opportunity_contacts,
    soql_string,
)

COLLECTION_LIMIT = 200  # Ids per ``Id IN (...)`` query, as the sObject Collections limit


class SalesforceTransport(Protocol):
    pages: int
    child_pages: int

    @property
    def conn(self) -> Any: ...

    def query_records(
        self, soql: str, include_deleted: bool = False, batch_size: int | None = None
    ) -> Iterator[dict[str, Any]]: ...

    def describe_fields(self, sobject: str) -> set[str]: ...


class SalesforceReads:
    # --- timesheets ---
    def opportunity_budgets(
        self: SalesforceTransport, opportunity_ids: list[str], budget_field: str
    ) -> list[OpportunityBudget]:
        """The budget field and line items of opportunities, 200 Ids a query.

        :param opportunity_ids: opportunity Ids (quoted as SOQL strings).
        :param budget_field: a field API name (``Budgeted_Hours__c``); validated before it is queried.
        :return: what Salesforce returned; Ids it does not know are absent.
        """
        if not SOQL_FIELD.fullmatch(budget_field):
            raise SalesforceApiError("INVALID_FIELD", f"budget_field {budget_field!r} is not a Salesforce field name")
        wanted = sorted(set(opportunity_ids))
        found = []
        for offset in range(0, len(wanted), COLLECTION_LIMIT):
            quoted = ", ".join(soql_string(oid) for oid in wanted[offset : offset + COLLECTION_LIMIT])
            soql = (
                f"SELECT Id, {budget_field}, (SELECT Quantity, TotalPrice, Product2.ProductCode "  # noqa: S608
                f"FROM OpportunityLineItems ORDER BY Id) FROM Opportunity WHERE Id IN ({quoted})"
            )
            for record in self.query_records(soql):
                items = (record.get("OpportunityLineItems") or {}).get("records") or []
                value = record.get(budget_field)
                found.append(
                    OpportunityBudget(
                        str(record["Id"]),
                        None if value in (None, "") else str(value),
                        tuple(
                            OpportunityLine(
                                str((item.get("Product2") or {}).get("ProductCode") or ""),
                                str(item.get("Quantity") or 0),
                                str(item.get("TotalPrice") or 0),
                            )
                            for item in items
                        ),
                    )
                )
        return found

    # --- CSAT (issue #9) ---
    def opportunity_contacts(
        self: SalesforceTransport, opportunity_ids: Sequence[str], extra_fields: Sequence[str] = ()
    ) -> list[OpportunityContacts]:
        """Opportunities with their contact roles and line items, in ``Id IN`` batches of 200.

        :param opportunity_ids: 15- or 18-character ids (escaped, so any text is safe).
        :param extra_fields: more Opportunity fields (``Customer_Facing_Name__c``, dotted ``Account.Name``),
            returned as text in ``fields`` ("" when unset or not text).
        :return: the opportunities found (deleted or invisible ones are absent), in id order.
        """
        for name in extra_fields:
            if not SOQL_FIELD.fullmatch(name):
                raise SalesforceApiError("INVALID_FIELD", f"{name!r} is not a field name")
        wanted = sorted(set(opportunity_ids))
        extra = "".join(f"{name}, " for name in extra_fields)
        found: list[OpportunityContacts] = []
        for offset in range(0, len(wanted), COLLECTION_LIMIT):
            quoted = ", ".join(soql_string(oid) for oid in wanted[offset : offset + COLLECTION_LIMIT])
            soql = (
                f"SELECT Id, Name, Account.Name, {extra}"  # noqa: S608 - ids escaped, field names checked
                "(SELECT ContactId, Role, IsPrimary, Contact.Name, Contact.Email, Contact.HasOptedOutOfEmail "
                "FROM OpportunityContactRoles ORDER BY Id), "
                "(SELECT TotalPrice, Product2.Name, Product2.Family FROM OpportunityLineItems ORDER BY Id) "
                f"FROM Opportunity WHERE Id IN ({quoted})"
            )
            found.extend(opportunity_contacts(record, extra_fields) for record in self.query_records(soql))
        return found

    # --- price book ---
    def price_book_products(
        self: SalesforceTransport,
        families: Sequence[str] = (),
        price_book: str | None = None,
        batch_size: int | None = None,
    ) -> PriceBookRead:
        """PS products with their entries in the standard price book (and ``price_book``), in one query.

        One ``Product2`` query with a ``PricebookEntries`` sub-query, paged through ``nextRecordsUrl``
        (the products and, past the child page size, a product's entries); ``describe`` of
        ``PricebookEntry`` once per hook tells whether the org has multi-currency (``CurrencyIsoCode``).

        :param families: ``Product2.Family`` values of PS products; empty: every product with a code.
        :param price_book: name of the PS price book read besides the standard one (None: standard only).
        :param batch_size: page size hint (200-2000).
        :return: products by (code, id), each with its entries by (price book, currency, id).
        """
        multi_currency = "CurrencyIsoCode" in self.describe_fields("PricebookEntry")
        entry_fields = "Id, Pricebook2Id, Pricebook2.Name, Pricebook2.IsStandard, Pricebook2.IsActive, UnitPrice, "
        entry_fields += "IsActive, UseStandardPrice" + (", CurrencyIsoCode" if multi_currency else "")
        books = "Pricebook2.IsStandard = true" + (
            f" OR Pricebook2.Name = {soql_string(price_book)}" if price_book else ""
        )
        where = "ProductCode != null"
        if families:
            where += " AND Family IN (" + ", ".join(soql_string(family) for family in families) + ")"
        soql = (
            f"SELECT Id, ProductCode, Name, IsActive, Family, (SELECT {entry_fields} FROM PricebookEntries "  # noqa: S608
            f"WHERE {books} ORDER BY Id) FROM Product2 WHERE {where} ORDER BY ProductCode, Id"
        )
        child_pages_before = self.child_pages
        products = [_price_book_product(record) for record in self.query_records(soql, batch_size=batch_size)]
        return PriceBookRead(tuple(products), multi_currency, self.pages, self.child_pages - child_pages_before)


# --- price book ---
def _price(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _price_book_product(record: dict[str, Any]) -> SalesforceProduct:
    entries = []
    for entry in (record.get("PricebookEntries") or {}).get("records") or []:
        book = entry.get("Pricebook2") or {}
        entries.append(
            PriceBookEntry(
                id=str(entry["Id"]),
                price_book_id=str(entry.get("Pricebook2Id") or ""),
                price_book_name=str(book.get("Name") or ""),
                standard=bool(book.get("IsStandard")),
                price_book_active=bool(book.get("IsActive")),
                unit_price=_price(entry.get("UnitPrice")),
                active=bool(entry.get("IsActive")),
                use_standard_price=bool(entry.get("UseStandardPrice")),
                currency=entry.get("CurrencyIsoCode"),
            )
        )
    return SalesforceProduct(
        id=str(record["Id"]),
        code=str(record.get("ProductCode") or ""),
        name=str(record.get("Name") or ""),
        active=bool(record.get("IsActive")),
        family=record.get("Family"),
        entries=tuple(sorted(entries, key=lambda e: (not e.standard, e.price_book_name, e.currency or "", e.id))),
    )
