"""services.yml, the PS catalog's single source of truth, read as the real file must be read.

The real file (``include/reference/services.yml``) has prices as integers (``35000``) and as
strings (``"$14,400"``), entries without a price, a ``sku: #TODO`` that YAML reads as null,
entries without a ``sku`` key, and an ``id`` used twice. Entries are validated with pydantic;
a YAML syntax error stops everything (``CatalogSyntaxError`` with file, line and column); an entry
that cannot be used is reported by id and reason (``InvalidEntry``) and the rest go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CURRENCY = "USD"
_MONEY = re.compile(r"^\s*(?P<symbol>[$€£])?\s*(?P<amount>\d{1,3}(,\d{3})+|\d+)(\.\d{1,2})?\s*(?P<code>[A-Z]{3})?\s*$")
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}


class CatalogSyntaxError(ValueError):
    """services.yml is not valid YAML; names the file, line and column."""

    def __init__(self, source: str, line: int, column: int, problem: str):
        super().__init__(f"{source}: YAML syntax error at line {line}, column {column}: {problem}")
        self.source, self.line, self.column, self.problem = source, line, column, problem


@dataclass(frozen=True)
class InvalidEntry:
    """A services.yml entry that could not be used."""

    entry_id: str
    line: int | None
    reason: str

    def describe(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"services.yml entry {self.entry_id}{where}: {self.reason}"


def parse_price(value: Any) -> tuple[Decimal | None, str | None]:
    """``35000`` / ``"$14,400"`` / ``"14400 EUR"`` -> (amount, currency or None if unstated)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool):
        raise ValueError(f"price {value!r} is not an amount")
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value)), None
    match = _MONEY.match(str(value))
    if not match:
        raise ValueError(f"price {value!r} is not an amount")
    text = str(value).strip()
    digits = re.sub(r"[^0-9.]", "", text)
    try:
        amount = Decimal(digits)
    except InvalidOperation:
        raise ValueError(f"price {value!r} is not an amount") from None
    currency = match.group("code") or _SYMBOLS.get(match.group("symbol") or "")
    return amount, currency


class ServiceEntry(BaseModel):
    """One offering of services.yml (only the fields reconciliation needs; the rest are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    name: str = ""
    sku: str | None = None
    category: str | None = None
    price: Decimal | None = None
    currency: str = DEFAULT_CURRENCY
    line: int | None = None

    @field_validator("id", "name", "category", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value).strip()

    @field_validator("sku", mode="before")
    @classmethod
    def _sku(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    @classmethod
    def from_yaml(cls, raw: dict[str, Any], line: int | None) -> ServiceEntry:
        amount, stated = parse_price(raw.get("price"))
        currency = str(raw.get("currency") or stated or DEFAULT_CURRENCY).upper()
        return cls(
            id=raw.get("id"),  # type: ignore[arg-type]
            name=raw.get("name") or "",
            sku=raw.get("sku"),
            category=raw.get("category"),
            price=amount,
            currency=currency,
            line=line,
        )


@dataclass(frozen=True)
class Catalog:
    entries: tuple[ServiceEntry, ...]
    invalid: tuple[InvalidEntry, ...]


def parse_services_yml(text: str, source: str = "services.yml") -> Catalog:
    """Parse and validate; raises ``CatalogSyntaxError`` for YAML that does not parse."""
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise CatalogSyntaxError(
            source, mark.line + 1 if mark else 0, mark.column + 1 if mark else 0, str(error.problem or error.context)
        ) from None
    if data is None:
        return Catalog((), ())
    if not isinstance(data, list):
        raise CatalogSyntaxError(source, 1, 1, "the catalog must be a list of entries")
    lines = [node.start_mark.line + 1 for node in document.value] if document is not None else []
    entries, invalid = [], []
    for position, raw in enumerate(data):
        line: int | None = lines[position] if position < len(lines) else None
        if not isinstance(raw, dict):
            invalid.append(InvalidEntry(f"#{position + 1}", line, f"not a mapping but {type(raw).__name__}"))
            continue
        entry_id = str(raw.get("id") or f"#{position + 1}")
        try:
            entries.append(ServiceEntry.from_yaml(raw, line))
        except (ValidationError, ValueError) as error:
            invalid.append(InvalidEntry(entry_id, line, _reason(error)))
    return Catalog(tuple(entries), tuple(invalid))


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'entry'}: {item['msg']}" for item in error.errors())
    return str(error)
