"""ZOQL, the Zuora Object Query Language of the SOAP API, parsed by a lark grammar.

As Zuora documents it: one object per query, lower-case keywords (``select``, ``from``, ``where``,
``and``, ``or``), no joins, no ``*``, no ``IN``, no ``ORDER BY``, no parentheses, ``and`` binding
tighter than ``or``, at most 200 conditions and 10,000 characters. Operators: ``=``, ``!=``,
``<``, ``<=``, ``>``, ``>=``, ``like`` (``%`` wildcard). Values: single-quoted strings (dates are
quoted ``'2026-01-31'``), numbers, ``true``/``false``, ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError

MAX_CONDITIONS = 200
MAX_LENGTH = 10_000

GRAMMAR = r"""
    start: "select" fields "from" NAME where?
    fields: NAME ("," NAME)*
    where: "where" or_expr
    or_expr: and_expr ("or" and_expr)*
    and_expr: condition ("and" condition)*
    condition: NAME OPERATOR value
    ?value: STRING   -> string
          | NUMBER   -> number
          | "true"   -> true
          | "false"  -> false
          | "null"   -> null
    OPERATOR: "<=" | ">=" | "!=" | "=" | "<" | ">" | "like"
    STRING: /'(\\.|[^'\\])*'/
    NUMBER: /-?\d+(\.\d+)?/
    NAME: /[A-Za-z_][A-Za-z0-9_]*/

    %import common.WS
    %ignore WS
"""


class ZoqlError(ValueError):
    """Not valid ZOQL (a MALFORMED_QUERY fault)."""


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: Any


@dataclass(frozen=True)
class ZoqlQuery:
    fields: tuple[str, ...]
    zobject: str
    # disjunctive normal form: OR of ANDs
    where: tuple[tuple[Condition, ...], ...] = ()


@v_args(inline=True)
class _ToAst(Transformer):
    def start(self, fields: tuple[str, ...], zobject: Token, where: Any = ()) -> ZoqlQuery:
        return ZoqlQuery(fields, str(zobject), where)

    def fields(self, *names: Token) -> tuple[str, ...]:
        return tuple(str(name) for name in names)

    def where(self, expression: Any) -> Any:
        return expression

    def or_expr(self, *terms: Any) -> tuple[tuple[Condition, ...], ...]:
        return tuple(terms)

    def and_expr(self, *conditions: Condition) -> tuple[Condition, ...]:
        return tuple(conditions)

    def condition(self, field: Token, operator: Token, value: Any) -> Condition:
        return Condition(str(field), str(operator), value)

    def string(self, token: Token) -> str:
        return str(token)[1:-1].replace("\\'", "'").replace("\\\\", "\\")

    def number(self, token: Token) -> float | int:
        text = str(token)
        return float(text) if "." in text else int(text)

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    def null(self) -> None:
        return None


_PARSER = Lark(GRAMMAR, parser="lalr")
_TO_AST = _ToAst()


def parse(zoql: str) -> ZoqlQuery:
    if len(zoql) > MAX_LENGTH:
        raise ZoqlError(f"query is {len(zoql)} characters; at most {MAX_LENGTH} are allowed")
    try:
        query = _TO_AST.transform(_PARSER.parse(zoql))
    except LarkError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ZoqlError(f"You have an error in your ZOQL syntax: {first_line}") from None
    conditions = sum(len(term) for term in query.where)
    if conditions > MAX_CONDITIONS:
        raise ZoqlError(f"the query has {conditions} conditions; at most {MAX_CONDITIONS} are allowed")
    return query
