"""Opportunity sync: Salesforce opportunities -> GitLab engagement issues. Pure: no I/O, no clock.

Input records are Salesforce REST query records (``attributes`` and nested relationships); output
is a plan of actions the DAG applies. Every text from Salesforce is made inert for GitLab
(``gitlab_text``) before it reaches an issue or a note.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ps_integrations.domain.gitlab_text import inline_markdown, issue_title
from ps_integrations.exceptions import ConfigurationError

WON_STAGE = "Closed Won"
MARKER_PREFIX = "ps-integrations:opportunity-id="
BLOCK_START = "<!-- ps-integrations:managed:start (edits between these markers are replaced on sync) -->"
BLOCK_END = "<!-- ps-integrations:managed:end -->"
MARKER_PATTERN = re.compile(r"<!-- ps-integrations:opportunity-id=(?P<id>[A-Za-z0-9]{15,18}) -->")
CHANGE_PREFIX = "ps-integrations:change="
CHANGE_PATTERN = re.compile(r"<!-- ps-integrations:change=(?P<id>[0-9a-f]{16,64}) -->")
SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")


class InvalidRecord(ValueError):
    """A Salesforce record that cannot be used; names the record and the field."""

    def __init__(self, record_id: str, field_name: str, reason: str):
        super().__init__(f"Opportunity {record_id} field {field_name}: {reason}")
        self.record_id = record_id
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class LineItem:
    sku: str | None
    product: str
    quantity: Decimal
    unit_price: Decimal
    total_price: Decimal


@dataclass(frozen=True)
class Opportunity:
    id: str
    name: str
    account: str
    owner: str
    owner_email: str | None
    stage: str
    is_won: bool
    is_deleted: bool
    close_date: date | None
    amount: Decimal | None
    currency: str
    modstamp: str
    line_items: tuple[LineItem, ...]
    issue_url_field: str | None = None

    @property
    def won(self) -> bool:
        return self.is_won and self.stage == WON_STAGE and not self.is_deleted


@dataclass(frozen=True)
class SyncConfig:
    project: str = "professional-services/engagements"
    fiscal_year_start_month: int = 2
    quarter_label: str = "close_qtr::Q{quarter}{yy}"
    # In a scope of its own: GitLab scoped labels are exclusive, so a sync label sharing a scope
    # with the team's workflow labels (ps::todo, ps::in-progress) would remove theirs.
    reopened_label: str = "ps-sync::opportunity-reopened"
    base_labels: tuple[str, ...] = ("proposal::Closed_Won", "ps::todo")
    unknown_sku_label: str = "sku::unknown"
    due_in_days: int | None = 30
    coordinator: str | None = None
    writeback_field: str | None = None
    overlap_minutes: int = 5
    gitlab_requests_per_minute: int = 600
    gitlab_notes_per_minute: int = 300  # GitLab's notes_create_limit (default 300 per user and minute)
    org_currency: str = "USD"  # the currency of an org without multi-currency (no CurrencyIsoCode)
    concurrency: int = 8

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SyncConfig:
        from ps_integrations.settings import settings_from_mapping

        config = settings_from_mapping(cls, data, "ps_opportunity_sync_config")
        if not 1 <= config.fiscal_year_start_month <= 12:
            raise ConfigurationError("ps_opportunity_sync_config: fiscal_year_start_month must be 1-12")
        problems = label_config_problems(config)
        if problems:
            raise ConfigurationError("ps_opportunity_sync_config: " + "; ".join(problems))
        return config

    def sync_labels(self) -> dict[str, str]:
        """The labels the sync sets and changes later, by setting name (the quarter label as an example)."""
        return {
            "reopened_label": self.reopened_label,
            "unknown_sku_label": self.unknown_sku_label,
            "quarter_label": self.quarter_label.format(quarter=1, year=2000, yy="00"),
        }


def label_scope(name: str) -> str | None:
    """GitLab's scope of a label: ``a::b`` -> ``a``, ``a::b::c`` -> ``a::b``, unscoped -> None."""
    return name.rsplit("::", 1)[0] if "::" in name else None


def label_config_problems(config: SyncConfig) -> list[str]:
    """Sync labels that would remove a label people own: one sharing a scope with a base label
    (set at creation, then the team's to change) or with another sync label."""
    problems = []
    seen: dict[str, str] = {}
    for setting, label in config.sync_labels().items():
        scope = label_scope(label)
        if scope is None:
            continue
        for base in config.base_labels:
            if label_scope(base) == scope:
                problems.append(
                    f"{setting} {label!r} shares the scope {scope!r} with the base label {base!r}; scoped labels "
                    f"are exclusive, so adding it would remove the team's label. Use a scope no person uses "
                    f"(e.g. 'ps-sync::{label.rsplit('::', 1)[1]}')"
                )
        if scope in seen:
            problems.append(f"{setting} {label!r} shares the scope {scope!r} with {seen[scope]}")
        seen[scope] = setting
    return problems


def is_sync_label(label: str, config: SyncConfig) -> bool:
    """A label the sync makes: its reopened or unknown-SKU label, or any quarter label of its format
    (an issue adopted by marker may carry an older quarter label the state store never saw)."""
    if label in (config.reopened_label, config.unknown_sku_label):
        return True
    pattern = re.escape(config.quarter_label)
    for name, digits in (("quarter", r"\d"), ("yy", r"\d{2}"), ("year", r"\d{4}")):
        pattern = pattern.replace(re.escape("{" + name + "}"), digits)
    return re.fullmatch(pattern, label) is not None


def label_collisions(current: list[str], adding: list[str], ours: set[str]) -> list[tuple[str, str]]:
    """(label to add, label it would remove) for labels on the issue the sync did not set."""
    found = []
    for label in adding:
        scope = label_scope(label)
        if scope is None:
            continue
        for existing in current:
            if existing != label and existing not in ours and label_scope(existing) == scope:
                found.append((label, existing))
    return found


@dataclass(frozen=True)
class EngagementTypes:
    """SKU -> engagement type, with a default per services.yml category."""

    by_sku: Mapping[str, str]
    by_category: Mapping[str, str]
    sku_categories: Mapping[str, str]
    custom_sow: str = "Custom SOW"

    def classify(self, skus: list[str | None]) -> tuple[str, list[str]]:
        """The engagement type of a deal and the SKUs found in neither the mapping nor the catalog.

        The first line item with a known SKU decides (line items come ordered by value); a deal
        with no catalog SKU at all is a custom SOW.
        """
        unknown = []
        chosen = None
        for sku in skus:
            if not sku:
                continue
            kind = self.by_sku.get(sku) or self.by_category.get(self.sku_categories.get(sku, ""))
            if kind is None:
                unknown.append(sku)
            elif chosen is None:
                chosen = kind
        return chosen or self.custom_sow, sorted(set(unknown))


def fiscal_quarter(day: date, start_month: int = 2) -> tuple[int, int]:
    """(quarter, fiscal year) - the fiscal year is named by the calendar year in which it ends."""
    offset = (day.month - start_month) % 12
    year = day.year + (1 if start_month > 1 and day.month >= start_month else 0)
    return offset // 3 + 1, year


def quarter_label(day: date, config: SyncConfig) -> str:
    quarter, year = fiscal_quarter(day, config.fiscal_year_start_month)
    return config.quarter_label.format(quarter=quarter, year=year, yy=f"{year % 100:02d}")


# --- parsing -------------------------------------------------------------------------------------------
def _money(record_id: str, name: str, value: Any, allow_none: bool = True) -> Decimal | None:
    if value is None and allow_none:
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidRecord(record_id, name, f"not a number: {value!r}") from None
    if not amount.is_finite():
        raise InvalidRecord(record_id, name, f"not a finite number: {value!r}")
    return amount


def _children(record: Mapping[str, Any], relationship: str) -> list[Mapping[str, Any]]:
    child = record.get(relationship)
    return list(child.get("records") or []) if isinstance(child, Mapping) else []


def require_issue_fields(opportunity: Opportunity) -> None:
    """A won opportunity needs a Name (the issue title) and a CloseDate (quarter label, due date)."""
    if not opportunity.name.strip():
        raise InvalidRecord(opportunity.id, "Name", "empty; it is the issue title")
    if opportunity.close_date is None:
        raise InvalidRecord(opportunity.id, "CloseDate", "empty; it sets the close quarter label and the due date")


def parse_opportunity(
    record: Mapping[str, Any], issue_url_field: str | None = None, default_currency: str = "USD"
) -> Opportunity:
    """A Salesforce Opportunity record -> ``Opportunity``; ``InvalidRecord`` names what is wrong."""
    record_id = str(record.get("Id") or "")
    if not SALESFORCE_ID.match(record_id):
        raise InvalidRecord(record_id or "(no Id)", "Id", "missing or not a Salesforce id")
    close = record.get("CloseDate")
    try:
        close_date = date.fromisoformat(close) if close else None
    except ValueError:
        raise InvalidRecord(record_id, "CloseDate", f"not a date: {close!r}") from None
    # An org without multi-currency has no CurrencyIsoCode: every amount is in the org's currency.
    currency = record.get("CurrencyIsoCode") or default_currency
    if not re.fullmatch(r"[A-Z]{3}", str(currency)):
        raise InvalidRecord(record_id, "CurrencyIsoCode", f"not an ISO 4217 code: {currency!r}")
    items = []
    for line in _children(record, "OpportunityLineItems"):
        product = line.get("Product2") or {}
        quantity = _money(record_id, "OpportunityLineItem.Quantity", line.get("Quantity"), allow_none=False)
        unit = _money(record_id, "OpportunityLineItem.UnitPrice", line.get("UnitPrice"), allow_none=False)
        stated_total = _money(record_id, "OpportunityLineItem.TotalPrice", line.get("TotalPrice"))
        total = stated_total if stated_total is not None else (quantity or Decimal(0)) * (unit or Decimal(0))
        items.append(
            LineItem(
                product.get("ProductCode") or None,
                str(product.get("Name") or ""),
                quantity or Decimal(0),
                unit or Decimal(0),
                total,
            )
        )
    items.sort(key=lambda item: (-item.total_price, item.sku or "", item.product))
    owner = record.get("Owner") or {}
    return Opportunity(
        id=record_id,
        name=str(record.get("Name") or ""),
        account=str((record.get("Account") or {}).get("Name") or ""),
        owner=str(owner.get("Name") or ""),
        owner_email=owner.get("Email"),
        stage=str(record.get("StageName") or ""),
        is_won=bool(record.get("IsWon")),
        is_deleted=bool(record.get("IsDeleted")),
        close_date=close_date,
        amount=_money(record_id, "Amount", record.get("Amount")),
        currency=str(currency),
        modstamp=str(record.get("SystemModstamp") or ""),
        line_items=tuple(items),
        issue_url_field=record.get(issue_url_field) if issue_url_field else None,
    )


# --- what the issue says -------------------------------------------------------------------------------
def marker(opportunity_id: str) -> str:
    return f"<!-- {MARKER_PREFIX}{opportunity_id} -->"


def find_marker(description: str | None) -> str | None:
    match = MARKER_PATTERN.search(description or "")
    return match.group("id") if match else None


def money_text(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else f"{amount:,.2f} {currency}"


def snapshot(opportunity: Opportunity) -> dict[str, Any]:
    """The fields a change note reports, as plain JSON-able values."""
    return {
        "account": opportunity.account,
        "name": opportunity.name,
        "owner": opportunity.owner,
        "stage": opportunity.stage,
        "amount": None if opportunity.amount is None else money_text(opportunity.amount, opportunity.currency),
        "currency": opportunity.currency,
        "close_date": opportunity.close_date.isoformat() if opportunity.close_date else None,
        "line_items": [
            f"{item.sku or '-'} {item.product} x{item.quantity.normalize()} @ {item.unit_price:,.2f}"
            for item in opportunity.line_items
        ],
    }


FIELD_NAMES = {
    "account": "Account",
    "name": "Opportunity",
    "owner": "Owner",
    "stage": "Stage",
    "amount": "Amount",
    "currency": "Currency",
    "close_date": "Close date",
    "line_items": "Line items",
}


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Change]:
    if not old:
        return []
    return [Change(name, old.get(name), new.get(name)) for name in FIELD_NAMES if old.get(name) != new.get(name)]


def _value_text(value: Any) -> str:
    if value is None or value == []:
        return "(none)"
    if isinstance(value, list):
        return "; ".join(value)
    return str(value)


def change_id(opportunity_id: str, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """The id of one change (what a note reports): the same change always gets the same id."""
    payload = json.dumps([opportunity_id, kind, old, new], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def with_change_id(body: str, identifier: str) -> str:
    """A note body carrying its change id hidden, so a re-run can tell the note was posted."""
    return f"{body}\n\n<!-- {CHANGE_PREFIX}{identifier} -->"


def change_ids(body: str | None) -> set[str]:
    return {match.group("id") for match in CHANGE_PATTERN.finditer(body or "")}


def change_note(changes: list[Change], modstamp: str) -> str:
    lines = [f"**Opportunity updated in Salesforce** (as of {inline_markdown(modstamp)}):", ""]
    for change in changes:
        lines.append(
            f"- {FIELD_NAMES[change.field]}: {inline_markdown(_value_text(change.old))} → "
            f"{inline_markdown(_value_text(change.new))}"
        )
    return "\n".join(lines)


def flag_note(opportunity: Opportunity, label: str) -> str:
    why = (
        "was deleted in Salesforce"
        if opportunity.is_deleted
        else f"left Closed Won (stage now: {inline_markdown(opportunity.stage)})"
    )
    return (
        f'**The opportunity {why}.** Labelled ~"{label}"; the issue stays open for the team to decide. '
        "If it is won again the label is removed."
    )


def unflag_note(label: str) -> str:
    return f'**The opportunity is Closed Won again.** Removed the ~"{label}" label.'


@dataclass(frozen=True)
class IssueContent:
    title: str
    managed_block: str
    labels: tuple[str, ...]
    due_date: str | None
    unknown_skus: tuple[str, ...]
    engagement_type: str

    def content_hash(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


def build_content(
    opportunity: Opportunity,
    types: EngagementTypes,
    config: SyncConfig,
    render_block: Any,
    salesforce_url: str,
) -> IssueContent:
    """What the issue should look like. ``render_block(context) -> str`` is the Jinja template."""
    engagement_type, unknown = types.classify([item.sku for item in opportunity.line_items])
    labels = [*config.base_labels, engagement_type]
    if opportunity.close_date:
        labels.append(quarter_label(opportunity.close_date, config))
    if unknown:
        labels.append(config.unknown_sku_label)
    due = (
        (opportunity.close_date + timedelta(days=config.due_in_days)).isoformat()
        if opportunity.close_date and config.due_in_days
        else None
    )
    context = {
        "account": inline_markdown(opportunity.account),
        "name": inline_markdown(opportunity.name),
        "owner": inline_markdown(opportunity.owner or "-"),
        "owner_email": inline_markdown(opportunity.owner_email or ""),
        "stage": inline_markdown(opportunity.stage),
        "amount": inline_markdown(money_text(opportunity.amount, opportunity.currency)),
        "currency": inline_markdown(opportunity.currency),
        "close_date": opportunity.close_date.isoformat() if opportunity.close_date else "-",
        "engagement_type": inline_markdown(engagement_type),
        "unknown_skus": [inline_markdown(sku) for sku in unknown],
        "line_items": [
            {
                "sku": inline_markdown(item.sku or "-"),
                "product": inline_markdown(item.product or "-"),
                "quantity": inline_markdown(str(item.quantity.normalize())),
                "unit_price": inline_markdown(money_text(item.unit_price, opportunity.currency)),
                "total_price": inline_markdown(money_text(item.total_price, opportunity.currency)),
            }
            for item in opportunity.line_items
        ],
        "salesforce_url": salesforce_url,
        "opportunity_id": opportunity.id,
    }
    title = issue_title(f"{opportunity.account}: {opportunity.name}" if opportunity.account else opportunity.name)
    return IssueContent(title, render_block(context).strip(), tuple(labels), due, tuple(unknown), engagement_type)


def compose_description(current: str | None, content: IssueContent, opportunity_id: str) -> str:
    """The issue description with only the managed block replaced; human edits elsewhere survive."""
    block = f"{BLOCK_START}\n{content.managed_block}\n{BLOCK_END}"
    text = current or ""
    start, end = text.find(BLOCK_START), text.find(BLOCK_END)
    if start != -1 and end > start:
        text = text[:start] + block + text[end + len(BLOCK_END) :]
    else:
        text = f"{block}\n\n{text}".rstrip() + "\n" if text.strip() else block + "\n"
    if find_marker(text) != opportunity_id:
        text = text.rstrip("\n") + f"\n\n{marker(opportunity_id)}\n"
    return text
