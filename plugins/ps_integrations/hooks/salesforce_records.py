"""Typed records the Salesforce hook returns for composite reads, built from the REST records."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SOQL_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?")


@dataclass(frozen=True)
class ContactRoleRecord:
    contact_id: str
    name: str
    email: str
    role: str
    is_primary: bool
    opted_out_of_email: bool  # Contact.HasOptedOutOfEmail


@dataclass(frozen=True)
class LineItemRecord:
    total_price: float
    product_name: str
    product_family: str


@dataclass(frozen=True)
class OpportunityContacts:
    id: str
    name: str
    account_name: str
    contact_roles: tuple[ContactRoleRecord, ...]
    line_items: tuple[LineItemRecord, ...]
    fields: Mapping[str, str]  # the extra fields asked for, as text


def _text_at(record: Mapping[str, Any], path: str) -> str:
    """A (possibly dotted) field of a record as text, "" when unset or not text."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value.strip() if isinstance(value, str) else ""


def _children(record: Mapping[str, Any], relationship: str) -> list[Mapping[str, Any]]:
    return list((record.get(relationship) or {}).get("records") or [])


def opportunity_contacts(record: Mapping[str, Any], extra_fields: Sequence[str]) -> OpportunityContacts:
    return OpportunityContacts(
        id=str(record["Id"]),
        name=str(record.get("Name") or ""),
        account_name=_text_at(record, "Account.Name"),
        contact_roles=tuple(
            ContactRoleRecord(
                contact_id=str(role.get("ContactId") or ""),
                name=_text_at(role, "Contact.Name"),
                email=_text_at(role, "Contact.Email"),
                role=str(role.get("Role") or ""),
                is_primary=bool(role.get("IsPrimary")),
                opted_out_of_email=bool((role.get("Contact") or {}).get("HasOptedOutOfEmail")),
            )
            for role in _children(record, "OpportunityContactRoles")
        ),
        line_items=tuple(
            LineItemRecord(
                total_price=float(item.get("TotalPrice") or 0),
                product_name=_text_at(item, "Product2.Name"),
                product_family=_text_at(item, "Product2.Family"),
            )
            for item in _children(record, "OpportunityLineItems")
        ),
        fields={name: _text_at(record, name) for name in extra_fields},
    )


@dataclass(frozen=True)
class OpportunityLine:
    sku: str  # Product2.ProductCode, empty when none
    quantity: str  # as Salesforce sent it (a number)
    total_price: str


@dataclass(frozen=True)
class OpportunityBudget:
    opportunity_id: str  # 18 characters
    budget: str | None  # the budget field as sent, None when empty
    lines: tuple[OpportunityLine, ...]


def soql_string(value: str) -> str:
    """A SOQL string literal: quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
