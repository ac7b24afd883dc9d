"""services.yml follows Zuora: the changes, applied to the file's text with the smallest diff. Pure.

Zuora is upstream. Where services.yml disagrees on something it should follow - a price, a name, a
product Zuora has ended, a Zuora PS product services.yml lacks - the reconciliation rows say so;
``follow_zuora`` turns them into changes and ``apply_changes`` writes them into the text.

A YAML dump of the whole file is not a minimal diff: even ruamel.yaml's round-trip dump rewrites
``name:     GitLab ...`` as ``name: GitLab ...`` and folds continuation lines (209 changed lines on
the real file with nothing changed). So the file is composed with ruamel.yaml, which gives every
node's exact start and end in the text; only the spans of the changed values are replaced, keeping
the scalar's style (plain, quoted, ``$14,400`` with its symbol and thousands separators), every
comment, the order and the formatting around them. The result is loaded again and compared with
the original data plus the intended changes: anything else changed is an error, never a commit.

Left to people (listed, not changed): entries whose id is used twice or that are written as an alias
(an edit would change another entry too), SKUs with several Zuora products or several Zuora prices
in the currency, and everything finance must do in Zuora.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ps_integrations.domain.sku_notes import money
from ps_integrations.domain.sku_reconciliation import Row
from ps_integrations.domain.zuora_catalog import ZuoraProduct

PRICE, NAME, RETIRE, ADD = "price", "name", "retire", "add"


class EditError(ValueError):
    """The edit cannot be made safely (entry not found where the reconciliation saw it, or the result
    would differ from the intended change); names the entry and the reason."""


@dataclass(frozen=True)
class Change:
    """One change that makes services.yml follow Zuora."""

    kind: str  # price | name | retire | add
    sku: str
    entry_id: str  # services.yml id (for "add": the new entry's id)
    line: int | None  # where the reconciliation saw the entry (1-based)
    old: str  # the value as services.yml has it (empty for "add")
    new: str  # Zuora's value (price as a plain decimal; empty for "retire")
    currency: str
    reason: str  # why, for the merge request's description
    name: str = ""  # for "add": Zuora's name

    def describe(self) -> str:
        where = f"`{self.entry_id}`" + (f" (line {self.line})" if self.line else "")
        if self.kind == PRICE:
            return f"{where}: {self.currency} price {self.old} -> {self.new}. {self.reason}"
        if self.kind == NAME:
            return f"{where}: name {json.dumps(self.old)} -> {json.dumps(self.new)}. {self.reason}"
        if self.kind == RETIRE:
            return f"{where}: removed (SKU {self.sku}). {self.reason}"
        price = f"{self.new} {self.currency}".strip() or "no price"
        return f"`{self.entry_id}` added: SKU {self.sku}, {json.dumps(self.name)}, {price}. {self.reason}"


@dataclass(frozen=True)
class Skipped:
    sku: str
    entry_id: str
    reason: str


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    skipped: tuple[Skipped, ...]


# --- which changes ------------------------------------------------------------------------------------


def _problems(row: Row) -> set[str]:
    return set(row["problems"].split("; "))


def new_entry_id(sku: str, taken: set[str]) -> str:
    """An id for a new entry, from its SKU (``PS-ZUORA-ONLY`` -> ``ps-zuora-only``), unique in the file."""
    base = re.sub(r"[^a-z0-9]+", "-", sku.strip().lower()).strip("-") or "zuora-product"
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


def follow_zuora(rows: Sequence[Row], zuora: Sequence[ZuoraProduct]) -> Plan:
    """The changes that make services.yml follow Zuora, one per entry and kind, in file order."""
    products = {product.id: product for product in zuora}
    changes: dict[tuple[str, str, str], Change] = {}
    skipped: dict[tuple[str, str], Skipped] = {}
    taken = {row["services_yml_id"] for row in rows if row["services_yml_id"]}
    for row in rows:
        problems = _problems(row)
        product = products.get(row["zuora_product_id"])
        entry_id, sku, line = row["services_yml_id"], row["sku"], row["services_yml_line"]
        ambiguous = problems & {"duplicate_services_yml_id", "duplicate_sku", "invalid_services_yml_entry"}
        wanted = problems & {"price_mismatch", "name_mismatch", "retired_in_zuora", "missing_in_services_yml"}
        if not wanted or product is None:
            continue
        if ambiguous:
            reason = " and ".join(sorted(ambiguous)) + ": left to a person"
            skipped[(sku, entry_id)] = Skipped(sku, entry_id, reason)
            continue
        if "missing_in_services_yml" in problems:
            prices = product.active_prices.get(row["currency"], ())
            key = (ADD, product.id, "")
            if key in changes or len(prices) > 1:
                continue
            if row["currency"] and not prices:
                continue  # e.g. a product not yet effective: no price yet, nothing to offer
            new_id = new_entry_id(sku, taken)
            taken.add(new_id)
            changes[key] = Change(
                ADD,
                sku,
                new_id,
                None,
                "",
                money(prices[0].amount) if prices else "",
                row["currency"],
                f"Zuora product {product.id} is a PS product services.yml does not list.",
                product.name,
            )
            continue
        if "retired_in_zuora" in problems and product.end is not None:
            changes[(RETIRE, entry_id, "")] = Change(
                RETIRE,
                sku,
                entry_id,
                line,
                row["services_yml_name"],
                "",
                "",
                f"Zuora product {product.id} ended on {product.end.isoformat()}.",
            )
            continue
        if "price_mismatch" in problems:
            offered = product.active_prices.get(row["currency"], ())
            if len(offered) != 1:
                skipped[(sku, entry_id)] = Skipped(sku, entry_id, f"Zuora has {len(offered)} {row['currency']} prices")
            else:
                changes[(PRICE, entry_id, row["currency"])] = Change(
                    PRICE,
                    sku,
                    entry_id,
                    line,
                    money(row["services_yml_price"]),
                    money(offered[0].amount),
                    row["currency"],
                    f"Zuora's price (rate plan {offered[0].rate_plan_id}).",
                )
        if "name_mismatch" in problems:
            changes[(NAME, entry_id, "")] = Change(
                NAME,
                sku,
                entry_id,
                line,
                row["services_yml_name"],
                product.name,
                "",
                f"Zuora's name (product {product.id}).",
            )
    ordered = sorted(changes.values(), key=lambda c: (c.kind == ADD, c.line or 0, c.kind, c.sku))
    return Plan(tuple(ordered), tuple(sorted(skipped.values(), key=lambda s: (s.sku, s.entry_id))))


# --- applying them to the text -------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def _load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _lines_start(text: str) -> list[int]:
    starts = [0]
    for index, char in enumerate(text):
        if char == "\n":
            starts.append(index + 1)
    return starts


def _value(item: MappingNode, key: str) -> ScalarNode | None:
    for key_node, value_node in item.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node if isinstance(value_node, ScalarNode) else None
    return None


def _format_amount(amount: Decimal, grouped: bool) -> str:
    text = money(amount)
    if text.endswith(".00"):
        text = text[:-3]
    if not grouped:
        return text
    whole, _, cents = text.partition(".")
    return f"{int(whole):,}" + (f".{cents}" if cents else "")


_AMOUNT = re.compile(r"\d[\d,]*(\.\d+)?")


def _price_text(token: str, node: ScalarNode, new: Decimal) -> str:
    """The new price written the way the old one was: ``7000`` -> ``7700``, ``"$14,400"`` -> ``"$15,000"``."""
    tag = str(node.tag or "")
    if tag.endswith((":int", ":float")) or (node.style is None and _AMOUNT.fullmatch(token)):
        return _format_amount(new, grouped=False)
    match = _AMOUNT.search(token)
    if match is None:
        raise EditError(f"price {token!r} has no amount to replace")
    amount = _format_amount(new, grouped="," in match.group(0))
    return token[: match.start()] + amount + token[match.end() :]


def _string_text(old_token: str, node: ScalarNode, new: str) -> str:
    """``new`` as a scalar in the old one's style where that reads back as ``new``; else double-quoted."""
    if node.style == "'" and "\n" not in new:
        candidate = "'" + new.replace("'", "''") + "'"
    elif node.style is None:
        candidate = new
    else:
        candidate = json.dumps(new, ensure_ascii=False)
    try:
        if _load(f"key: {candidate}\n") == {"key": new}:
            return candidate
    except YAMLError:
        pass
    return json.dumps(new, ensure_ascii=False)


def _entries(root: Node) -> list[MappingNode]:
    if not isinstance(root, SequenceNode):
        raise EditError("services.yml is not a list of entries")
    return [item for item in root.value if isinstance(item, MappingNode)]


def _find(items: list[MappingNode], change: Change) -> MappingNode:
    counts: dict[int, int] = {}
    for item in items:
        counts[id(item)] = counts.get(id(item), 0) + 1
    for item in items:
        id_node = _value(item, "id")
        if id_node is None or str(id_node.value) != change.entry_id:
            continue
        if change.line is not None and item.start_mark.line + 1 != change.line:
            continue
        if counts[id(item)] > 1:
            raise EditError(f"services.yml entry {change.entry_id} is written as an alias: left to a person")
        return item
    where = f" at line {change.line}" if change.line else ""
    raise EditError(f"services.yml entry {change.entry_id}{where} not found (the file changed since it was read?)")


def _scalar_edit(text: str, item: MappingNode, key: str, change: Change) -> _Edit:
    node = _value(item, key)
    if node is None:
        raise EditError(f"services.yml entry {change.entry_id} has no single-value {key} to change")
    start, end = node.start_mark.index, node.end_mark.index
    token = text[start:end]
    if "\n" in token:
        raise EditError(f"services.yml entry {change.entry_id}: {key} spans several lines; left to a person")
    new = _price_text(token, node, Decimal(change.new)) if key == "price" else _string_text(token, node, change.new)
    return _Edit(start, end, new)


def _comment_block_start(text: str, starts: list[int], line: int, floor: int) -> int:
    """The first line of the comment block right above ``line`` (``line`` itself when there is none)."""
    first = line
    while first - 1 > floor and text[starts[first - 1] :].lstrip(" ").startswith("#"):
        first -= 1
    return first


def _entry_span(text: str, items: list[MappingNode], item: MappingNode) -> _Edit:
    """An entry's lines with its own comment block (comments right above it after a blank line), up to
    the next entry's comment block, which stays with that entry; a header at the top of the file stays."""
    starts = _lines_start(text)
    position = next(i for i, candidate in enumerate(items) if candidate is item)
    line = item.start_mark.line
    own = _comment_block_start(text, starts, line, -1)
    if 0 < own < line and text[starts[own - 1] :].startswith(("\n", "\r\n")):
        line = own
    first = starts[line]
    if position + 1 < len(items):
        last = starts[_comment_block_start(text, starts, items[position + 1].start_mark.line, item.start_mark.line)]
    else:
        last = len(text)
    return _Edit(first, last, "")


def _new_entry(text: str, items: list[MappingNode], change: Change) -> _Edit:
    indent = " " * (items[0].start_mark.column if items else 2)
    dash = indent[:-2] if len(indent) >= 2 else ""
    lines = [f"{dash}- id: {_string_text('', _plain(), change.entry_id)}"]
    lines.append(f"{indent}name: {_string_text('', _plain(), change.name)}")
    if change.new:
        price = _format_amount(Decimal(change.new), grouped=False)
        lines.append(f"{indent}price: " + (price if change.currency in ("", "USD") else f"{price} {change.currency}"))
    lines.append(f"{indent}sku: {_string_text('', _plain(), change.sku)}")
    newline = "\r\n" if "\r\n" in text else "\n"  # the file's own line ends
    body = newline.join(lines) + newline
    # entries separated by a blank line (the real file's layout) get one before the new entry too
    between = text[items[0].start_mark.index : items[1].start_mark.index] if len(items) > 1 else ""
    separated = newline * 2 in between
    prefix = "" if text.endswith("\n") or not text else newline
    if separated and not text.endswith(newline * 2):
        prefix += newline
    return _Edit(len(text), len(text), prefix + body)


def _plain() -> ScalarNode:
    return ScalarNode("tag:yaml.org,2002:str", "", style=None)


def apply_changes(text: str, changes: Sequence[Change]) -> str:
    """The text with the changes made; raises ``EditError`` if any cannot be made exactly."""
    if not changes:
        return text
    try:
        root = _yaml().compose(io.StringIO(text))
    except YAMLError as error:
        raise EditError(f"services.yml cannot be read: {error}") from None
    items = _entries(root)
    edits = []
    for change in changes:
        if change.kind == ADD:
            edits.append(_new_entry(text, items, change))
            continue
        item = _find(items, change)
        if change.kind == RETIRE:
            edits.append(_entry_span(text, items, item))
        else:
            edits.append(_scalar_edit(text, item, "price" if change.kind == PRICE else "name", change))
    edited = text
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        edited = edited[: edit.start] + edit.text + edited[edit.end :]
    _verify(text, edited, changes)
    return edited


def _expected(original: list[Any], changes: Sequence[Change]) -> list[Any]:
    """The original data with the changes made, as a reader of the file sees them."""
    expected = [dict(entry) if isinstance(entry, dict) else entry for entry in original]
    removed = set()
    for change in changes:
        if change.kind == ADD:
            entry: dict[str, Any] = {"id": change.entry_id, "name": change.name}
            if change.new:
                amount = Decimal(change.new)
                whole = amount == amount.to_integral_value()
                number: Any = int(amount) if whole else float(amount)
                entry["price"] = (
                    number if change.currency in ("", "USD") else f"{_format_amount(amount, False)} {change.currency}"
                )
            entry["sku"] = change.sku
            expected.append(entry)
            continue
        index = next(
            i
            for i, e in enumerate(expected)
            if isinstance(e, dict) and str(e.get("id")) == change.entry_id and i not in removed
        )
        if change.kind == RETIRE:
            removed.add(index)
        elif change.kind == NAME:
            expected[index]["name"] = change.new
        else:
            expected[index]["price"] = _reread_price(expected[index].get("price"), Decimal(change.new))
    return [entry for i, entry in enumerate(expected) if i not in removed]


def _reread_price(old: Any, new: Decimal) -> Any:
    if isinstance(old, bool) or not isinstance(old, int | float | str):
        return old
    if isinstance(old, int | float):
        return int(new) if new == new.to_integral_value() else float(new)
    match = _AMOUNT.search(old)
    if match is None:
        return old
    return old[: match.start()] + _format_amount(new, "," in match.group(0)) + old[match.end() :]


def _verify(original_text: str, edited_text: str, changes: Sequence[Change]) -> None:
    try:
        edited = _load(edited_text)
    except YAMLError as error:
        raise EditError(f"the edited services.yml would not be valid YAML: {error}") from None
    original = _load(original_text)
    if not isinstance(original, list) or edited != _expected(original, changes):
        raise EditError("the edited services.yml differs from the intended changes; nothing is changed")
