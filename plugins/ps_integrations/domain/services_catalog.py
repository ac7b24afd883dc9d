"""services.yml, the PS catalog's single source of truth, read as the real file must be read.

The real file (``include/reference/services.yml``) has prices as integers (``35000``) and as
strings (``"$14,400"``), entries without a price, a ``sku: #TODO`` that YAML reads as null,
entries without a ``sku`` key, and an ``id`` used twice. Entries are validated with pydantic;
a YAML syntax error stops everything (``CatalogSyntaxError`` with file, line and column); an entry
that cannot be used is reported by id and reason (``InvalidEntry``) and the rest go on.

Positions are the ones a person editing the file sees: an entry written as an alias (``- *base``)
is at the alias's line, not the anchor's; an unquoted SKU that YAML turns into something else
(``0755`` -> 493, ``12:30`` -> 750, ``NO`` -> false) keeps the text as written and says where it is.
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
    # the SKU exactly as written (surrounding spaces and case kept), and where its value starts
    raw_sku: str | None = None
    sku_line: int | None = None
    sku_column: int | None = None
    # set when YAML read an unquoted SKU as another type: what it became, e.g. "the number 493"
    sku_coerced_to: str | None = None
    alias_of_line: int | None = None

    @property
    def written_sku(self) -> str:
        """The SKU as written in the file (spaces and case kept); "" when there is none."""
        return self.raw_sku if self.raw_sku is not None else (self.sku or "")

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
    def from_yaml(cls, raw: dict[str, Any], line: int | None, sku: SkuText | None = None) -> ServiceEntry:
        amount, stated = parse_price(raw.get("price"))
        currency = str(raw.get("currency") or stated or DEFAULT_CURRENCY).upper()
        written = sku.text if sku is not None else raw.get("sku")
        return cls(
            id=raw.get("id"),  # type: ignore[arg-type]
            name=raw.get("name") or "",
            sku=written,
            category=raw.get("category"),
            price=amount,
            currency=currency,
            line=line,
            raw_sku=None if written is None else str(written),
            sku_line=sku.line if sku else None,
            sku_column=sku.column if sku else None,
            sku_coerced_to=sku.coerced_to if sku else None,
        )


@dataclass(frozen=True)
class SkuText:
    """The ``sku`` value of an entry as written in the file."""

    text: str | None
    line: int
    column: int
    coerced_to: str | None


def _describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"the {type(value).__name__} {value}"


def _sku_text(node: yaml.Node, value: Any) -> SkuText | None:
    """The sku as written: a plain scalar YAML resolved to a non-string keeps its source text."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value_node in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "sku" and isinstance(value_node, yaml.ScalarNode):
            line, column = value_node.start_mark.line + 1, value_node.start_mark.column + 1
            if value_node.tag == "tag:yaml.org,2002:null":
                return SkuText(None, line, column, None)
            coerced = None
            if value_node.tag != "tag:yaml.org,2002:str" and str(value) != value_node.value:
                coerced = _describe_value(value)
            return SkuText(value_node.value, line, column, coerced)
    return None


class _PositionLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each top-level item starts as written (aliases included)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.item_marks: list[tuple[int, bool]] = []  # (line, is an alias)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth == 2:
                event = self.peek_event()
                self.item_marks.append((event.start_mark.line + 1, isinstance(event, yaml.AliasEvent)))
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


@dataclass(frozen=True)
class Catalog:
    entries: tuple[ServiceEntry, ...]
    invalid: tuple[InvalidEntry, ...]

    def duplicated_ids(self) -> list[str]:
        """services.yml ids used by more than one entry, each with the lines of every use."""
        lines: dict[str, list[str]] = {}
        for entry in sorted(self.entries, key=lambda e: e.line or 0):
            place = f"line {entry.line}" + (f" (alias of line {entry.alias_of_line})" if entry.alias_of_line else "")
            lines.setdefault(entry.id, []).append(place)
        return [f"{key} ({', '.join(places)})" for key, places in sorted(lines.items()) if len(places) > 1]


def parse_services_yml(text: str, source: str = "services.yml") -> Catalog:
    """Parse and validate; raises ``CatalogSyntaxError`` for YAML that does not parse."""
    loader = _PositionLoader(text)
    try:
        document = loader.get_single_node()
        data = loader.construct_document(document) if document is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise CatalogSyntaxError(
            source, mark.line + 1 if mark else 0, mark.column + 1 if mark else 0, str(error.problem or error.context)
        ) from None
    finally:
        loader.dispose()
    if data is None:
        return Catalog((), ())
    if not isinstance(data, list):
        raise CatalogSyntaxError(source, 1, 1, "the catalog must be a list of entries")
    nodes = document.value if isinstance(document, yaml.SequenceNode) else []
    entries, invalid = [], []
    for position, raw in enumerate(data):
        line, is_alias = loader.item_marks[position] if position < len(loader.item_marks) else (None, False)
        if not isinstance(raw, dict):
            invalid.append(InvalidEntry(f"#{position + 1}", line, f"not a mapping but {type(raw).__name__}"))
            continue
        entry_id = str(raw.get("id") or f"#{position + 1}")
        node = nodes[position] if position < len(nodes) else None
        try:
            entry = ServiceEntry.from_yaml(raw, line, _sku_text(node, raw.get("sku")) if node is not None else None)
            if is_alias and node is not None:
                entry = entry.model_copy(update={"alias_of_line": node.start_mark.line + 1})
            entries.append(entry)
        except (ValidationError, ValueError) as error:
            invalid.append(InvalidEntry(entry_id, line, _reason(error)))
    return Catalog(tuple(entries), tuple(invalid))


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'entry'}: {item['msg']}" for item in error.errors())
    return str(error)
