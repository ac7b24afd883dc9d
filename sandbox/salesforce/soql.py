"""SOQL parsed by a real grammar (lark, LALR) into a small AST the backend evaluates.

Supported: field lists with parent paths (``Account.Name``), child sub-queries, ``WHERE`` with
comparisons, ``LIKE``, ``IN``/``NOT IN``, ``AND``/``OR``/``NOT`` and parentheses, date and datetime
literals and relative date literals (``TODAY``, ``LAST_N_DAYS:n``...), ``ORDER BY`` with
``ASC``/``DESC`` and ``NULLS FIRST``/``LAST``, ``LIMIT`` and ``OFFSET``.
Not supported (rejected with MALFORMED_QUERY like any other syntax error): aggregate functions,
``GROUP BY``, semi-joins, ``TYPEOF``, ``FOR UPDATE``, ``WITH``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedInput, UnexpectedToken

GRAMMAR = r"""
    start: select

    select: SELECT field_list FROM NAME where? order_by? limit? offset?
    subquery: "(" SELECT sub_field_list FROM NAME where? order_by? limit? ")"

    field_list: field_item ("," field_item)*
    ?field_item: path | subquery
    sub_field_list: path ("," path)*
    path: NAME ("." NAME)*

    where: WHERE or_expr
    ?or_expr: and_expr (OR and_expr)*       -> or_
    ?and_expr: not_expr (AND not_expr)*     -> and_
    ?not_expr: NOT not_expr                 -> not_
             | atom
    ?atom: "(" or_expr ")"
         | comparison
    comparison: path COMPARATOR value       -> compare
              | path LIKE STRING            -> like
              | path IN value_list          -> in_
              | path NOT IN value_list      -> not_in
    value_list: "(" value ("," value)* ")"

    ?value: STRING       -> string
          | SIGNED_NUMBER -> number
          | DATETIME     -> datetime
          | DATE         -> date
          | TRUE         -> true
          | FALSE        -> false
          | NULL         -> null
          | DATE_LITERAL -> date_literal

    order_by: ORDER BY order_item ("," order_item)*
    order_item: path DIRECTION? nulls?
    nulls: NULLS NULLS_WHERE
    limit: LIMIT INT
    offset: OFFSET INT

    SELECT.2: /select\b/i
    FROM.2: /from\b/i
    WHERE.2: /where\b/i
    AND.2: /and\b/i
    OR.2: /or\b/i
    NOT.2: /not\b/i
    LIKE.2: /like\b/i
    IN.2: /in\b/i
    ORDER.2: /order\b/i
    BY.2: /by\b/i
    LIMIT.2: /limit\b/i
    OFFSET.2: /offset\b/i
    NULLS.2: /nulls\b/i
    NULLS_WHERE.2: /(first|last)\b/i
    DIRECTION.2: /(asc|desc)\b/i
    TRUE.2: /true\b/i
    FALSE.2: /false\b/i
    NULL.2: /null\b/i
    DATE_LITERAL.3: /(today|yesterday|tomorrow|last_week|this_week|next_week)\b/i
                  | /(last_month|this_month|next_month|this_year|last_year)\b/i
                  | /(last_n_days|next_n_days|n_days_ago|last_n_weeks|next_n_weeks)\s*:\s*\d+/i
    DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})/
    DATE.2: /\d{4}-\d{2}-\d{2}/
    COMPARATOR: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
    STRING: /'(\\.|[^'\\])*'/
    NAME: /[A-Za-z_][A-Za-z0-9_]*/

    %import common.SIGNED_NUMBER
    %import common.INT
    %import common.WS
    %ignore WS
"""


class SoqlSyntaxError(ValueError):
    """The query is not valid SOQL (reported as MALFORMED_QUERY)."""


@dataclass(frozen=True)
class DateLiteral:
    """A relative date literal such as ``LAST_N_DAYS:30``."""

    name: str
    n: int | None = None


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    operator: str  # = != < <= > >= like in not_in
    value: Any


@dataclass(frozen=True)
class BoolOp:
    operator: str  # and / or / not
    operands: tuple[Any, ...]


@dataclass(frozen=True)
class OrderItem:
    path: tuple[str, ...]
    descending: bool = False
    nulls_last: bool = False


@dataclass
class Query:
    fields: list[tuple[str, ...]]
    sobject: str
    subqueries: list[Query] = field(default_factory=list)
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


def _unquote(token: str) -> str:
    body = token[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
    out = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            nxt = body[index + 1]
            # LIKE keeps \_ and \% escaped; other escapes resolve
            out.append(escapes.get(nxt, "\\" + nxt))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _bool_op(operator: str, items: tuple[Any, ...]) -> Any:
    operands = tuple(item for item in items if not isinstance(item, Token))
    return operands[0] if len(operands) == 1 else BoolOp(operator, operands)


@v_args(inline=True)
class _ToAst(Transformer):
    def start(self, query: Query) -> Query:
        return query

    def path(self, *names: Token) -> tuple[str, ...]:
        return tuple(str(name) for name in names)

    def field_list(self, *items: Any) -> list[Any]:
        return list(items)

    def sub_field_list(self, *items: Any) -> list[Any]:
        return list(items)

    def _build(self, items: tuple[Any, ...]) -> Query:
        fields: list[Any] = items[1]
        query = Query(fields=[], sobject=str(items[3]))
        for item in fields:
            if isinstance(item, Query):
                query.subqueries.append(item)
            else:
                query.fields.append(item)
        for clause in items[4:]:
            kind, value = clause
            setattr(query, kind, value)
        return query

    def select(self, *items: Any) -> Query:
        return self._build(items)

    def subquery(self, *items: Any) -> Query:
        return self._build(items)

    def where(self, _keyword: Token, condition: Any) -> tuple[str, Any]:
        return ("where", condition)

    def or_(self, *items: Any) -> Any:
        return _bool_op("or", items)

    def and_(self, *items: Any) -> Any:
        return _bool_op("and", items)

    def not_(self, _keyword: Token, operand: Any) -> BoolOp:
        return BoolOp("not", (operand,))

    def compare(self, path: tuple[str, ...], operator: Token, value: Any) -> Comparison:
        op = "!=" if str(operator) == "<>" else str(operator)
        return Comparison(path, op, value)

    def like(self, path: tuple[str, ...], _keyword: Token, pattern: Token) -> Comparison:
        return Comparison(path, "like", _unquote(str(pattern)))

    def in_(self, path: tuple[str, ...], _keyword: Token, values: list[Any]) -> Comparison:
        return Comparison(path, "in", tuple(values))

    def not_in(self, path: tuple[str, ...], _not: Token, _in: Token, values: list[Any]) -> Comparison:
        return Comparison(path, "not_in", tuple(values))

    def value_list(self, *values: Any) -> list[Any]:
        return list(values)

    def string(self, token: Token) -> str:
        return _unquote(str(token))

    def number(self, token: Token) -> float | int:
        text = str(token)
        return float(text) if any(char in text for char in ".eE") else int(text)

    def datetime(self, token: Token) -> datetime:
        text = str(token).replace("Z", "+00:00")
        return datetime.fromisoformat(text)

    def date(self, token: Token) -> date:
        return date.fromisoformat(str(token))

    def true(self, _token: Token) -> bool:
        return True

    def false(self, _token: Token) -> bool:
        return False

    def null(self, _token: Token) -> None:
        return None

    def date_literal(self, token: Token) -> DateLiteral:
        name, _, n = str(token).replace(" ", "").partition(":")
        return DateLiteral(name.upper(), int(n) if n else None)

    def order_by(self, _order: Token, _by: Token, *items: OrderItem) -> tuple[str, list[OrderItem]]:
        return ("order_by", list(items))

    def order_item(self, path: tuple[str, ...], *rest: Any) -> OrderItem:
        descending = False
        nulls_last = None
        for item in rest:
            if isinstance(item, Token) and item.type == "DIRECTION":
                descending = str(item).lower() == "desc"
            elif isinstance(item, str):
                nulls_last = item == "last"
        if nulls_last is None:
            nulls_last = descending  # Salesforce: ASC NULLS FIRST, DESC NULLS LAST
        return OrderItem(path, descending, nulls_last)

    def nulls(self, _nulls: Token, where: Token) -> str:
        return str(where).lower()

    def limit(self, _keyword: Token, count: Token) -> tuple[str, int]:
        return ("limit", int(count))

    def offset(self, _keyword: Token, count: Token) -> tuple[str, int]:
        return ("offset", int(count))


_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)
_TO_AST = _ToAst()


def parse(soql: str) -> Query:
    """Parse one SOQL statement; raise ``SoqlSyntaxError`` with Salesforce's message layout."""
    try:
        tree = _PARSER.parse(soql)
    except UnexpectedToken as error:
        token = "EOF" if error.token.type == "$END" else str(error.token)
        raise SoqlSyntaxError(_message(soql, error.line, error.column, token)) from None
    except UnexpectedInput as error:
        position = getattr(error, "pos_in_stream", 0) or 0
        token = soql[position : position + 1] or "EOF"
        raise SoqlSyntaxError(_message(soql, error.line, error.column, token)) from None
    except LarkError as error:
        raise SoqlSyntaxError(str(error)) from None
    query = _TO_AST.transform(tree)
    assert isinstance(query, Query)
    return query


def _message(soql: str, line: int, column: int, token: str) -> str:
    if line is None or line < 1:
        line, column = 1, len(soql.splitlines()[-1]) + 1 if soql.strip() else 1
    row = soql.splitlines()[line - 1] if soql.splitlines() else ""
    return f"\n{row}\n{' ' * (column - 1)}^\nERROR at Row:{line}:Column:{column}\nunexpected token: '{token}'"
