"""Zuora backend: the product catalog objects, credentials, ZOQL evaluation and query locators.

No SOAP here (``standin.py`` is the wire layer). Field names and which fields exist come from the
real WSDL's types. Not implemented: the other ~60 zObject types, ``create``/``update``/``delete``,
``caseSensitive``, export ZOQL functions.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.zuora.zoql import Condition, ZoqlError, parse

CATALOG_OBJECTS = ("Product", "ProductRatePlan", "ProductRatePlanCharge", "ProductRatePlanChargeTier")
MAX_BATCH = 2000
LOCATOR_TTL_SECONDS = 15 * 60


class ZuoraFaultError(Exception):
    """A SOAP fault: Zuora's FaultCode, message, the fault element and the HTTP status."""

    def __init__(self, code: str, message: str, fault_type: str = "UnexpectedErrorFault", status: int = 500):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fault_type = fault_type
        self.status = status


@dataclass
class Locator:
    zobject: str
    records: list[dict[str, Any]]
    position: int
    batch_size: int
    created: float


class ZuoraBackend:
    def __init__(self, field_types: dict[str, dict[str, str]]) -> None:
        """:param field_types: object -> field -> XSD type name (from the WSDL)."""
        self.field_types = field_types
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in CATALOG_OBJECTS}
        self.credentials: dict[str, str] = {}
        self.locators: dict[str, Locator] = {}
        self.locator_ttl: float = LOCATOR_TTL_SECONDS
        self.concurrency_limit = 20
        # Zuora promises no record order (ZOQL has no ORDER BY): each query answers in a different,
        # seeded random order, so a client that depends on the order fails its tests
        self.record_order_seed = 0
        self.queries = 0

    def load(self, seed: dict[str, Any]) -> None:
        from sandbox.zuora.seed import build_catalog

        with self.lock:
            self.records = {name: {} for name in CATALOG_OBJECTS}
            self.credentials = {user["username"]: user["password"] for user in seed.get("users", [])}
            self.locators.clear()
            self.locator_ttl = float(seed.get("locator_ttl_seconds", LOCATOR_TTL_SECONDS))
            self.concurrency_limit = int(seed.get("concurrency_limit", 20))
            self.record_order_seed = int(seed.get("record_order_seed", 0))
            self.queries = 0
            for zobject, rows in build_catalog(seed).items():
                for row in rows:
                    self.records[zobject][row["Id"]] = row

    def check_login(self, username: str, password: str) -> bool:
        return bool(username) and self.credentials.get(username) == password

    # --- queries ---------------------------------------------------------------------------------
    def query(self, zoql: str, batch_size: int | None) -> dict[str, Any]:
        try:
            parsed = parse(zoql)
        except ZoqlError as error:
            raise ZuoraFaultError("MALFORMED_QUERY", str(error), "MalformedQueryFault") from None
        zobject = next((name for name in self.field_types if name.lower() == parsed.zobject.lower()), None)
        if zobject is None or zobject not in self.records:
            raise ZuoraFaultError(
                "MALFORMED_QUERY", f"invalid object for query: {parsed.zobject}", "MalformedQueryFault"
            )
        types = self.field_types[zobject]
        fields = []
        for name in parsed.fields:
            canonical = next((field for field in types if field.lower() == name.lower()), None)
            if canonical is None:
                raise ZuoraFaultError(
                    "MALFORMED_QUERY", f"invalid field for query: {zobject}.{name}", "MalformedQueryFault"
                )
            fields.append(canonical)
        for term in parsed.where:
            for condition in term:
                if not any(field.lower() == condition.field.lower() for field in types):
                    raise ZuoraFaultError(
                        "MALFORMED_QUERY",
                        f"invalid field for query: {zobject}.{condition.field}",
                        "MalformedQueryFault",
                    )
        if batch_size is not None and not 0 <= batch_size <= MAX_BATCH:
            raise ZuoraFaultError(
                "INVALID_VALUE", f"invalid batch size: {batch_size} (0-{MAX_BATCH})", "InvalidValueFault"
            )
        size = batch_size or MAX_BATCH
        with self.lock:
            rows = [row for row in self.records[zobject].values() if self._matches(row, parsed.where, types)]
            rows.sort(key=lambda row: row["Id"])
            self.queries += 1
            random.Random(f"{self.record_order_seed}:{self.queries}").shuffle(rows)
            selected = [
                {"Id": row["Id"], **{field: row.get(field) for field in fields if field != "Id"}} for row in rows
            ]
            locator_id = secrets.token_hex(16)
            self.locators[locator_id] = Locator(zobject, selected, 0, size, time.monotonic())
            return self._page(locator_id)

    def query_more(self, locator_id: str, batch_size: int | None) -> dict[str, Any]:
        with self.lock:
            locator = self.locators.get(locator_id or "")
            if locator is None or time.monotonic() - locator.created > self.locator_ttl:
                self.locators.pop(locator_id or "", None)
                raise ZuoraFaultError("INVALID_VALUE", "invalid query locator", "InvalidQueryLocatorFault")
            if batch_size:
                locator.batch_size = min(batch_size, MAX_BATCH)
            return self._page(locator_id)

    def _page(self, locator_id: str) -> dict[str, Any]:
        locator = self.locators[locator_id]
        chunk = locator.records[locator.position : locator.position + locator.batch_size]
        locator.position += len(chunk)
        done = locator.position >= len(locator.records)
        if done:
            del self.locators[locator_id]
        return {
            "zobject": locator.zobject,
            "records": chunk,
            "done": done,
            "queryLocator": None if done else locator_id,
            "size": len(locator.records),
        }

    def _matches(self, row: dict[str, Any], where: tuple[tuple[Condition, ...], ...], types: dict[str, str]) -> bool:
        if not where:
            return True
        return any(all(self._condition(row, condition, types) for condition in term) for term in where)

    @staticmethod
    def _condition(row: dict[str, Any], condition: Condition, types: dict[str, str]) -> bool:
        field = next(name for name in types if name.lower() == condition.field.lower())
        actual = row.get(field)
        expected = condition.value
        kind = types[field]
        if condition.operator == "like":
            if actual is None or not isinstance(expected, str):
                return False
            pattern = "".join(".*" if char == "%" else re.escape(char) for char in expected)
            return re.fullmatch(pattern, str(actual), flags=re.IGNORECASE | re.DOTALL) is not None
        if expected is None or actual is None:
            equal = expected is None and actual is None
            return equal if condition.operator == "=" else (not equal if condition.operator == "!=" else False)
        try:
            left, right = _typed(kind, actual), _typed(kind, expected)
        except (ValueError, InvalidOperation):
            raise ZuoraFaultError(
                "INVALID_VALUE", f"invalid value for {field}: {expected!r}", "InvalidValueFault"
            ) from None
        if isinstance(left, str) and isinstance(right, str):
            left, right = left.lower(), right.lower()  # ZOQL compares strings case-insensitively by default
        return {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[condition.operator]

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "counts": {name: len(rows) for name, rows in self.records.items()},
                "open_locators": len(self.locators),
                "records": {name: [_jsonable(row) for row in rows.values()] for name, rows in self.records.items()},
            }


def _typed(kind: str, value: Any) -> Any:
    if kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if kind == "dateTime":
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if kind in ("decimal", "double", "int", "long"):
        return Decimal(str(value))
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return str(value)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (
            value.isoformat()
            if isinstance(value, date | datetime)
            else str(value)
            if isinstance(value, Decimal)
            else value
        )
        for key, value in row.items()
    }
