"""Salesforce backend: records, SOQL evaluation, query locators, writes and API usage.

No HTTP here; ``responses.py`` turns requests into calls and ``SalesforceError`` into the wire shape.
Not implemented: field-level security, sharing, validation rules, triggers, currency conversion,
``undelete``. A child sub-query longer than ``child_page_size`` comes back partial, with its own
``nextRecordsUrl`` inside the parent record; an org seeded with ``multi_currency: false`` has no
``CurrencyIsoCode`` (naming it is ``INVALID_FIELD``, describe leaves it out).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ps_integrations import clock
from sandbox.salesforce.schema import OBJECTS, STAGES, FieldDef, ObjectDef, find_object
from sandbox.salesforce.soql import BoolOp, Comparison, DateLiteral, Query, SoqlSyntaxError, parse

DEFAULT_PAGE_SIZE = 2000
# A child sub-query with more rows than this comes back partial: its own nextRecordsUrl inside the
# parent record (read with queryMore), as real Salesforce does for large relationships.
DEFAULT_CHILD_PAGE_SIZE = 200
# Fields that exist only in orgs with multi-currency enabled.
MULTI_CURRENCY_FIELDS = {"CurrencyIsoCode"}
MIN_BATCH_SIZE = 200
LOCATOR_TTL_SECONDS = 15 * 60
DEFAULT_DAILY_LIMIT = 15000
API_VERSION = "59.0"
# Records created without an Id get numbers from here, clear of the generated seed ids.
AUTO_ID_BASE = 500_000
CONTENT_LINK_FILTER = re.compile(r"\b(ContentDocumentId|LinkedEntityId)\s*(=|\bIN\b)", re.IGNORECASE)
CONTENT_LINK_RESTRICTION = (
    "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId "
    "or LinkedEntityId using the equals operator or multiple Id's using the IN operator."
)
MAX_MENTIONS = 25
MAX_FEED_TEXT = 10000


class SalesforceError(Exception):
    """An error in Salesforce's REST shape: HTTP status, errorCode, message."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        error: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]


# --- ids and values -----------------------------------------------------------------------------
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id_checksum(id15: str) -> str:
    """The 3-character suffix that makes a 15-character id case-insensitively unique."""
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << index for index, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += _ID_ALPHABET[bits]
    return suffix


def make_id(key_prefix: str, number: int) -> str:
    id15 = key_prefix + "5g0" + f"{number:09d}"
    return id15 + id_checksum(id15)


def format_datetime(moment: datetime) -> str:
    """Salesforce REST's datetime format: ``2026-11-21T10:15:00.000+0000``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def _coerce(definition: FieldDef, value: Any) -> Any:
    """A stored value in its Python comparison type."""
    if value is None:
        return None
    if definition.type == "date":
        return date.fromisoformat(value) if isinstance(value, str) else value
    if definition.type == "datetime":
        return parse_datetime(value) if isinstance(value, str) else value
    return value


def _date_range(literal: DateLiteral, today: date) -> tuple[date, date]:
    """[start, end) of a relative date literal (weeks start on Sunday, as in en_US orgs)."""
    n = literal.n or 0
    name = literal.name
    week_start = today - timedelta(days=(today.weekday() + 1) % 7)
    month_start = today.replace(day=1)

    def add_months(start: date, months: int) -> date:
        month = start.month - 1 + months
        return date(start.year + month // 12, month % 12 + 1, 1)

    ranges = {
        "TODAY": (today, today + timedelta(days=1)),
        "YESTERDAY": (today - timedelta(days=1), today),
        "TOMORROW": (today + timedelta(days=1), today + timedelta(days=2)),
        "LAST_N_DAYS": (today - timedelta(days=n), today + timedelta(days=1)),
        "NEXT_N_DAYS": (today + timedelta(days=1), today + timedelta(days=1 + n)),
        "N_DAYS_AGO": (today - timedelta(days=n), today - timedelta(days=n - 1)),
        "THIS_WEEK": (week_start, week_start + timedelta(days=7)),
        "LAST_WEEK": (week_start - timedelta(days=7), week_start),
        "NEXT_WEEK": (week_start + timedelta(days=7), week_start + timedelta(days=14)),
        "LAST_N_WEEKS": (week_start - timedelta(days=7 * n), week_start),
        "NEXT_N_WEEKS": (week_start + timedelta(days=7), week_start + timedelta(days=7 * (n + 1))),
        "THIS_MONTH": (month_start, add_months(month_start, 1)),
        "LAST_MONTH": (add_months(month_start, -1), month_start),
        "NEXT_MONTH": (add_months(month_start, 1), add_months(month_start, 2)),
        "THIS_YEAR": (date(today.year, 1, 1), date(today.year + 1, 1, 1)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), date(today.year, 1, 1)),
    }
    return ranges[name]


def _like(pattern: str, value: str) -> bool:
    regex = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex += re.escape(pattern[index + 1])
            index += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        index += 1
    return re.fullmatch(regex, value, flags=re.IGNORECASE | re.DOTALL) is not None


# --- the backend -----------------------------------------------------------------------------------
@dataclass
class Locator:
    records: list[tuple[dict[str, Any], int]]  # (serialised record, weight incl. children)
    batch_size: int
    last_used: float
    include_deleted: bool


@dataclass
class Credentials:
    username: str
    password: str
    security_token: str
    user_id: str


class SalesforceBackend:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in OBJECTS}
        self.credentials: dict[str, Credentials] = {}
        self.connected_apps: dict[str, dict[str, Any]] = {}
        self.locators: dict[str, Locator] = {}
        self.daily_limit = DEFAULT_DAILY_LIMIT
        self.api_usage = 0
        self.page_size = DEFAULT_PAGE_SIZE
        self.child_page_size = DEFAULT_CHILD_PAGE_SIZE
        self.multi_currency = True
        self.locator_ttl: float = LOCATOR_TTL_SECONDS
        self.org_id = "00D5g000004ORGA" + id_checksum("00D5g000004ORGA")
        self.blobs: dict[str, bytes] = {}  # ContentVersion id -> file bytes
        self.feed_segments: dict[str, list[dict[str, Any]]] = {}  # FeedItem id -> message segments
        self._counter = 0
        self._children_of: dict[int, dict[str, list[dict[str, Any]]]] = {}
        self.clock: Callable[[], datetime] = clock.now

    # --- seed ------------------------------------------------------------------------------------
    def load(self, seed: dict[str, Any]) -> None:
        from sandbox.salesforce.seed import build_records

        with self.lock:
            self.records = {name: {} for name in OBJECTS}
            self.credentials.clear()
            self.connected_apps = {app["consumer_key"]: app for app in seed.get("connected_apps", [])}
            self.locators.clear()
            self.blobs.clear()
            self.feed_segments.clear()
            self.daily_limit = int(seed.get("daily_api_limit", DEFAULT_DAILY_LIMIT))
            self.page_size = int(seed.get("page_size", DEFAULT_PAGE_SIZE))
            self.child_page_size = int(seed.get("child_page_size", DEFAULT_CHILD_PAGE_SIZE))
            self.multi_currency = bool(seed.get("multi_currency", True))
            self.locator_ttl = float(seed.get("locator_ttl_seconds", LOCATOR_TTL_SECONDS))
            self.api_usage = int(seed.get("api_usage", 0))
            self._counter = 0
            for sobject, rows in build_records(seed).items():
                for row in rows:
                    self.insert(sobject, row)
            for user in seed.get("users", []):
                user_id = self._find_user(user["username"])
                self.credentials[user["username"]] = Credentials(
                    user["username"], user["password"], user.get("security_token", ""), user_id
                )

    def _find_user(self, username: str) -> str:
        for record in self.records["User"].values():
            if record.get("Username") == username:
                return str(record["Id"])
        raise ValueError(f"seed: login user {username} has no User record")

    def insert(self, sobject: str, values: dict[str, Any]) -> dict[str, Any]:
        """Store a record as seeded (ids and timestamps may be given), deriving read-only fields."""
        definition = OBJECTS[sobject]
        with self.lock:
            self._counter += 1
            record: dict[str, Any] = dict.fromkeys(definition.fields)
            now = format_datetime(self.clock())
            record.update({"IsDeleted": False, "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now})
            record.update(values)
            if not self.multi_currency:
                for name in MULTI_CURRENCY_FIELDS:
                    record.pop(name, None)
            record["Id"] = values.get("Id") or make_id(definition.key_prefix, AUTO_ID_BASE + self._counter)
            self._derive(sobject, record)
            self.records[sobject][record["Id"]] = record
            return record

    def _derive(self, sobject: str, record: dict[str, Any]) -> None:
        if sobject == "Opportunity" and record.get("StageName") in STAGES:
            record["IsClosed"], record["IsWon"] = STAGES[record["StageName"]]
        if sobject in ("User", "Contact"):
            record["Name"] = " ".join(part for part in (record.get("FirstName"), record.get("LastName")) if part)
        if sobject == "OpportunityLineItem":
            product = self.records["Product2"].get(record.get("Product2Id") or "")
            if product:
                record["Name"] = product.get("Name")
                record["ProductCode"] = product.get("ProductCode")
            if record.get("Quantity") is not None and record.get("UnitPrice") is not None:
                record["TotalPrice"] = round(float(record["Quantity"]) * float(record["UnitPrice"]), 2)
        if sobject == "PricebookEntry":
            product = self.records["Product2"].get(record.get("Product2Id") or "")
            if product:
                record["Name"] = product.get("Name")
                record["ProductCode"] = product.get("ProductCode")
            standard = self._standard_entry(record) if record.get("UseStandardPrice") else None
            if standard is not None:
                record["UnitPrice"] = standard.get("UnitPrice")  # "Use Standard Price": the standard list price

    def _standard_entry(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The standard price book's entry for the entry's product (and currency), if any."""
        standard_books = {
            book_id[:15] for book_id, book in self.records["Pricebook2"].items() if book.get("IsStandard")
        }
        for candidate in self.records["PricebookEntry"].values():
            if (
                (candidate.get("Pricebook2Id") or "")[:15] in standard_books
                and (candidate.get("Product2Id") or "")[:15] == (entry.get("Product2Id") or "")[:15]
                and candidate.get("CurrencyIsoCode") == entry.get("CurrencyIsoCode")
                and not candidate.get("IsDeleted")
            ):
                return candidate
        return None

    def _check_price_book_entry(self, values: dict[str, Any]) -> None:
        """A custom price book takes a product only once it has a standard price (in that currency)."""
        book_id = str(values.get("Pricebook2Id") or "")
        product_id = str(values.get("Product2Id") or "")
        book = next((b for i, b in self.records["Pricebook2"].items() if i[:15] == book_id[:15] and book_id), None)
        if book is None or not any(i[:15] == product_id[:15] and product_id for i in self.records["Product2"]):
            missing = "Pricebook2Id" if book is None else "Product2Id"
            raise SalesforceError(
                400, "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {values.get(missing)}", [missing]
            )
        if not book.get("IsStandard") and self._standard_entry(values) is None:
            raise SalesforceError(400, "STANDARD_PRICE_NOT_DEFINED", "No standard price defined for this product", [])

    # --- auth and limits ---------------------------------------------------------------------------
    def check_password(self, username: str, password_and_token: str) -> Credentials | None:
        credentials = self.credentials.get(username)
        if credentials is None:
            return None
        valid = {credentials.password + credentials.security_token}
        return credentials if password_and_token in valid else None

    def count_api_call(self) -> None:
        with self.lock:
            if self.api_usage >= self.daily_limit:
                raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_usage += 1

    def limit_info(self) -> str:
        return f"api-usage={self.api_usage}/{self.daily_limit}"

    # --- reads ---------------------------------------------------------------------------------------
    def query(self, soql: str, include_deleted: bool, batch_size: int | None, version: str) -> dict[str, Any]:
        try:
            query = parse(soql)
        except SoqlSyntaxError as error:
            raise SalesforceError(400, "MALFORMED_QUERY", str(error)) from None
        with self.lock:
            definition = self._object(query.sobject)
            self._validate(query, definition, soql)
            if definition.name == "ContentDocumentLink" and not CONTENT_LINK_FILTER.search(soql):
                raise SalesforceError(400, "MALFORMED_QUERY", CONTENT_LINK_RESTRICTION)
            rows = self._select(query, definition, include_deleted)
            self._children_of = {}  # each sub-query runs once per query, not once per parent
            try:
                serialised = [self._serialise(query, definition, row, include_deleted, version) for row in rows]
            finally:
                self._children_of = {}
            size = self.page_size if batch_size is None else max(MIN_BATCH_SIZE, min(batch_size, self.page_size))
            locator_id = "01g" + secrets.token_hex(6).upper()[:12]
            self.locators[locator_id] = Locator(serialised, size, time.monotonic(), include_deleted)
            return self._page(locator_id, 0, version)

    def query_more(self, locator_token: str, include_deleted: bool, version: str) -> dict[str, Any]:
        locator_id, _, offset = locator_token.rpartition("-")
        with self.lock:
            locator = self.locators.get(locator_id)
            if locator is None or not offset.isdigit() or time.monotonic() - locator.last_used > self.locator_ttl:
                self.locators.pop(locator_id, None)
                raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            locator.last_used = time.monotonic()
            return self._page(locator_id, int(offset), version)

    def _page(self, locator_id: str, offset: int, version: str) -> dict[str, Any]:
        locator = self.locators[locator_id]
        records: list[dict[str, Any]] = []
        weight = 0
        position = offset
        while position < len(locator.records):
            record, record_weight = locator.records[position]
            if records and weight + record_weight > locator.batch_size:
                break
            records.append(record)
            weight += record_weight
            position += 1
        result: dict[str, Any] = {"totalSize": len(locator.records), "done": position >= len(locator.records)}
        if not result["done"]:
            endpoint = "queryAll" if locator.include_deleted else "query"
            result["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{locator_id}-{position}"
        else:
            self.locators.pop(locator_id, None)
        result["records"] = records
        return result

    def _object(self, name: str) -> ObjectDef:
        definition = find_object(name)
        if definition is None:
            raise SalesforceError(
                400,
                "INVALID_TYPE",
                f"\nFROM {name}\n     ^\nERROR at Row:1:Column:1\nsObject type '{name}' is not supported. "
                "If you are attempting to use a custom object, be sure to append the '__c' after the entity "
                "name. Please reference your WSDL or the describe call for the appropriate names.",
            )
        return definition

    def _resolve(self, definition: ObjectDef, path: tuple[str, ...], soql: str) -> FieldDef:
        current = definition
        for relationship in path[:-1]:
            reference = current.parent(relationship)
            if reference is None or reference.reference_to is None:
                raise self._no_such_column(".".join(path), current.name, soql)
            current = OBJECTS[reference.reference_to]
        field = current.field(path[-1])
        if field is None or not self.has_field(field.name):
            raise self._no_such_column(".".join(path), current.name, soql)
        return field

    def has_field(self, name: str) -> bool:
        """Whether the org has the field at all (CurrencyIsoCode only with multi-currency enabled)."""
        return self.multi_currency or name not in MULTI_CURRENCY_FIELDS

    def describe(self, sobject: str) -> dict[str, Any]:
        """The sObject describe: the object's fields as this org has them (a subset of the real shape)."""
        definition = self._object(sobject)
        fields = []
        for field in definition.fields.values():
            if not self.has_field(field.name):
                continue
            fields.append(
                {
                    "name": field.name,
                    "type": field.type,
                    "updateable": field.updateable,
                    "createable": field.updateable,
                    "nillable": field.name != "Id",
                    "referenceTo": [field.reference_to] if field.reference_to else [],
                    "relationshipName": field.relationship_name,
                }
            )
        children = [
            {"relationshipName": name, "childSObject": child, "field": foreign_key}
            for name, (child, foreign_key) in definition.children.items()
        ]
        return {
            "name": definition.name,
            "keyPrefix": definition.key_prefix,
            "queryable": True,
            "updateable": True,
            "fields": fields,
            "childRelationships": children,
        }

    @staticmethod
    def _no_such_column(name: str, entity: str, soql: str) -> SalesforceError:
        column = soql.find(name.split(".")[-1]) + 1
        return SalesforceError(
            400,
            "INVALID_FIELD",
            f"\n{soql}\n{' ' * max(column - 1, 0)}^\nERROR at Row:1:Column:{max(column, 1)}\n"
            f"No such column '{name.split('.')[-1]}' on entity '{entity}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
        )

    def _validate(self, query: Query, definition: ObjectDef, soql: str) -> None:
        for path in query.fields:
            self._resolve(definition, path, soql)
        self._validate_condition(query.where, definition, soql)
        for item in query.order_by:
            self._resolve(definition, item.path, soql)
        for subquery in query.subqueries:
            child = definition.child(subquery.sobject)
            if child is None:
                raise SalesforceError(
                    400,
                    "INVALID_TYPE",
                    f"\n{soql}\nERROR at Row:1:Column:1\nDidn't understand relationship '{subquery.sobject}' "
                    "in FROM part of query call. If you are attempting to use a custom relationship, be sure "
                    "to append the '__r' after the custom relationship name. Please reference your WSDL or "
                    "the describe call for the appropriate names.",
                )
            if subquery.subqueries:
                raise SalesforceError(400, "MALFORMED_QUERY", "nested sub-queries are not supported")
            self._validate(subquery, OBJECTS[child[1][0]], soql)

    def _validate_condition(self, condition: Any, definition: ObjectDef, soql: str) -> None:
        if condition is None:
            return
        if isinstance(condition, BoolOp):
            for operand in condition.operands:
                self._validate_condition(operand, definition, soql)
            return
        field = self._resolve(definition, condition.path, soql)
        values = condition.value if condition.operator in ("in", "not_in") else (condition.value,)
        for value in values:
            if value is None or isinstance(value, DateLiteral):
                if isinstance(value, DateLiteral) and field.type not in ("date", "datetime"):
                    raise self._bad_value(field, "date")
                continue
            expected = field.type
            if expected == "date" and not (isinstance(value, date) and not isinstance(value, datetime)):
                raise self._bad_value(field, "date")
            if expected == "datetime" and not isinstance(value, datetime):
                raise self._bad_value(field, "dateTime")
            if expected == "boolean" and not isinstance(value, bool):
                raise self._bad_value(field, "boolean")
            if expected in ("currency", "double", "int") and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise self._bad_value(field, "double")
            if expected in (
                "string",
                "textarea",
                "email",
                "url",
                "picklist",
                "id",
                "reference",
            ) and not isinstance(value, str):
                raise self._bad_value(field, "string")
        if condition.operator == "like" and field.type not in (
            "string",
            "textarea",
            "email",
            "url",
            "picklist",
        ):
            raise SalesforceError(400, "INVALID_FIELD", f"invalid operator on {field.type} field {field.name}")

    @staticmethod
    def _bad_value(field: FieldDef, expected: str) -> SalesforceError:
        quoted = "should be enclosed in quotes" if expected == "string" else "should not be enclosed in quotes"
        return SalesforceError(
            400,
            "INVALID_FIELD",
            f"value of filter criterion for field '{field.name}' must be of type {expected} and {quoted}",
        )

    def _value(
        self, definition: ObjectDef, record: dict[str, Any] | None, path: tuple[str, ...]
    ) -> tuple[FieldDef, Any]:
        current = definition
        for relationship in path[:-1]:
            reference = current.parent(relationship)
            assert reference is not None and reference.reference_to is not None
            target = reference.reference_to
            record = self.records[target].get(record.get(reference.name) or "") if record else None
            current = OBJECTS[target]
        field = current.field(path[-1])
        assert field is not None
        return field, _coerce(field, record.get(field.name)) if record else None

    def _matches(self, definition: ObjectDef, record: dict[str, Any], condition: Any) -> bool:
        if condition is None:
            return True
        if isinstance(condition, BoolOp):
            results = (self._matches(definition, record, operand) for operand in condition.operands)
            if condition.operator == "and":
                return all(results)
            if condition.operator == "or":
                return any(results)
            return not next(iter(results))
        assert isinstance(condition, Comparison)
        field, actual = self._value(definition, record, condition.path)
        return self._compare(field, actual, condition.operator, condition.value)

    def _compare(self, field: FieldDef, actual: Any, operator: str, expected: Any) -> bool:
        if operator in ("in", "not_in"):
            found = any(self._compare(field, actual, "=", value) for value in expected)
            return found if operator == "in" else not found
        if operator == "like":
            return actual is not None and _like(expected, str(actual))
        if isinstance(expected, DateLiteral):
            if actual is None:
                return operator == "!="
            start, end = _date_range(expected, self.clock().date())
            if field.type == "datetime":
                start_value: Any = datetime.combine(start, datetime.min.time(), UTC)
                end_value: Any = datetime.combine(end, datetime.min.time(), UTC)
            else:
                start_value, end_value = start, end
            inside = start_value <= actual < end_value
            return {
                "=": inside,
                "!=": not inside,
                "<": actual < start_value,
                "<=": actual < end_value,
                ">": actual >= end_value,
                ">=": actual >= start_value,
            }[operator]
        if expected is None or actual is None:
            equal = expected is None and actual is None
            return {"=": equal, "!=": not equal}.get(operator, False)
        left, right = self._normalise(field, actual), self._normalise(field, expected)
        return {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[operator]

    @staticmethod
    def _normalise(field: FieldDef, value: Any) -> Any:
        if field.type in ("id", "reference") and isinstance(value, str):
            return value[:15]
        if isinstance(value, str):
            return value.casefold()
        return value

    def _rows(self, sobject: str, include_deleted: bool) -> list[dict[str, Any]]:
        return [row for row in self.records[sobject].values() if include_deleted or not row["IsDeleted"]]

    def _select(self, query: Query, definition: ObjectDef, include_deleted: bool) -> list[dict[str, Any]]:
        rows = [
            row for row in self._rows(definition.name, include_deleted) if self._matches(definition, row, query.where)
        ]
        for item in reversed(query.order_by):
            present = [row for row in rows if self._value(definition, row, item.path)[1] is not None]
            missing = [row for row in rows if self._value(definition, row, item.path)[1] is None]
            path = item.path

            def sort_key(row: dict[str, Any], path: tuple[str, ...] = path) -> Any:
                return self._sort_key(self._value(definition, row, path)[1])

            present.sort(key=sort_key, reverse=item.descending)
            rows = present + missing if item.nulls_last else missing + present
        if query.offset:
            rows = rows[query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        return rows

    @staticmethod
    def _sort_key(value: Any) -> Any:
        return value.casefold() if isinstance(value, str) else value

    def _attributes(self, sobject: str, record_id: str, version: str) -> dict[str, str]:
        return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}

    def _serialise(
        self, query: Query, definition: ObjectDef, row: dict[str, Any], include_deleted: bool, version: str
    ) -> tuple[dict[str, Any], int]:
        output: dict[str, Any] = {"attributes": self._attributes(definition.name, row["Id"], version)}
        for path in query.fields:
            self._place(output, definition, row, path, version)
        weight = 1
        for subquery in query.subqueries:
            child = definition.child(subquery.sobject)
            assert child is not None
            relationship, (child_type, foreign_key) = child
            child_definition = OBJECTS[child_type]
            if id(subquery) not in self._children_of:
                grouped: dict[str, list[dict[str, Any]]] = {}
                for candidate in self._select(subquery, child_definition, include_deleted):
                    grouped.setdefault((candidate.get(foreign_key) or "")[:15], []).append(candidate)
                self._children_of[id(subquery)] = grouped
            children = self._children_of[id(subquery)].get(row["Id"][:15], [])
            if children:
                records = [
                    self._serialise(subquery, child_definition, child_row, include_deleted, version)[0]
                    for child_row in children
                ]
                output[relationship] = self._child_result(records, include_deleted, version)
                weight += len(output[relationship]["records"])
            else:
                output[relationship] = None
        return output, weight

    def _child_result(self, records: list[dict[str, Any]], include_deleted: bool, version: str) -> dict[str, Any]:
        """A child relationship's query result: whole, or its first page with its own locator."""
        if len(records) <= self.child_page_size:
            return {"totalSize": len(records), "done": True, "records": records}
        locator_id = "01g" + secrets.token_hex(6).upper()[:12]
        self.locators[locator_id] = Locator(
            [(record, 1) for record in records], self.child_page_size, time.monotonic(), include_deleted
        )
        return self._page(locator_id, 0, version)

    def _place(
        self,
        output: dict[str, Any],
        definition: ObjectDef,
        row: dict[str, Any] | None,
        path: tuple[str, ...],
        version: str,
    ) -> None:
        if len(path) == 1:
            field = definition.field(path[0])
            assert field is not None
            output[field.name] = row.get(field.name) if row else None
            return
        reference = definition.parent(path[0])
        assert reference is not None and reference.reference_to is not None
        parent_definition = OBJECTS[reference.reference_to]
        parent = self.records[parent_definition.name].get((row or {}).get(reference.name) or "")
        name = reference.relationship_name or path[0]
        if parent is None:
            output[name] = None
            return
        nested = output.get(name) or {"attributes": self._attributes(parent_definition.name, parent["Id"], version)}
        output[name] = nested
        self._place(nested, parent_definition, parent, path[1:], version)

    # --- writes --------------------------------------------------------------------------------------
    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        definition = self._object(sobject)
        with self.lock:
            record = self._find(definition, record_id)
            return dict(record)

    def _find(self, definition: ObjectDef, record_id: str) -> dict[str, Any]:
        for stored_id, record in self.records[definition.name].items():
            if stored_id[:15] == record_id[:15]:
                if record["IsDeleted"]:
                    raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
                return record
        raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")

    def _check_fields(self, definition: ObjectDef, values: dict[str, Any], creating: bool = False) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        read_only = []
        for name, value in values.items():
            if name == "attributes":
                continue
            field = definition.field(name)
            if field is None or not self.has_field(field.name):
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {definition.name}", []
                )
            if not (field.can_create if creating else field.updateable):
                read_only.append(field.name)
            clean[field.name] = value
        if read_only:
            raise SalesforceError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or permission set.",
                read_only,
            )
        if "StageName" in clean and clean["StageName"] not in STAGES:
            raise SalesforceError(
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"Stage: bad value for restricted picklist field: {clean['StageName']}",
                ["StageName"],
            )
        return clean

    def _touch(self, record: dict[str, Any]) -> None:
        now = self.clock()
        previous = parse_datetime(record["SystemModstamp"]) if record.get("SystemModstamp") else None
        if previous is not None and now <= previous:
            now = previous + timedelta(milliseconds=1)  # the stamp always moves forward
        record["SystemModstamp"] = record["LastModifiedDate"] = format_datetime(now)

    def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        definition = self._object(sobject)
        with self.lock:
            record = self._find(definition, record_id)
            record.update(self._check_fields(definition, values))
            self._derive(definition.name, record)
            self._touch(record)

    def create(self, sobject: str, values: dict[str, Any], actor: str = "") -> str:
        definition = self._object(sobject)
        if definition.name == "ContentVersion":
            return self.create_content_version(values, actor)
        if definition.name == "FeedItem":
            raise SalesforceError(
                400, "INVALID_TYPE_FOR_OPERATION", "posts are created through the Connect REST API in this sandbox"
            )
        with self.lock:
            clean = self._check_fields(definition, values, creating=True)
            if definition.name == "PricebookEntry":
                self._check_price_book_entry(clean)
            record = self.insert(definition.name, {**clean, "Id": None})
            return str(record["Id"])

    def delete(self, sobject: str, record_id: str) -> None:
        definition = self._object(sobject)
        with self.lock:
            record = self._find(definition, record_id)
            self._soft_delete(definition, record)

    def _soft_delete(self, definition: ObjectDef, record: dict[str, Any]) -> None:
        record["IsDeleted"] = True
        self._touch(record)
        for _relationship, (child_type, foreign_key) in definition.children.items():
            if child_type in ("Opportunity", "Contact"):
                continue  # Salesforce does not cascade these from Account in this model
            for child in self.records[child_type].values():
                if (child.get(foreign_key) or "")[:15] == record["Id"][:15] and not child["IsDeleted"]:
                    self._soft_delete(OBJECTS[child_type], child)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "api_usage": self.limit_info(),
                "counts": {name: len(rows) for name, rows in self.records.items()},
                "records": {name: list(rows.values()) for name, rows in self.records.items()},
            }

    # --- Salesforce Files (issue #22) -----------------------------------------------------------------
    def _existing_id(self, sobjects: tuple[str, ...], record_id: str, field: str) -> tuple[str, dict[str, Any]]:
        for sobject in sobjects:
            for stored_id, record in self.records[sobject].items():
                if stored_id[:15] == str(record_id)[:15] and not record["IsDeleted"]:
                    return sobject, record
        raise SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {record_id}", [field])

    def create_content_version(self, values: dict[str, Any], actor: str) -> str:
        """Insert a file version: without ``ContentDocumentId`` a new document is created and shared with
        ``FirstPublishLocationId`` (and its owner); with it, a new version of that document.

        Not implemented: ``ContentUrl`` links, ``ContentBodyId``, libraries (``ContentWorkspace``),
        ``NetworkId``, chunked upload, the 38 MB insert limit.
        """
        import base64
        import binascii
        import hashlib

        definition = OBJECTS["ContentVersion"]
        with self.lock:
            clean = self._check_fields(definition, values, creating=True)
            missing = [name for name in ("PathOnClient", "VersionData") if not clean.get(name)]
            if missing:
                raise SalesforceError(
                    400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
                )
            try:
                data = base64.b64decode(str(clean["VersionData"]), validate=True)
            except (binascii.Error, ValueError):
                raise SalesforceError(
                    400, "JSON_PARSER_ERROR", "Cannot deserialize instance of base64 from VALUE_STRING value"
                ) from None
            document_id = clean.get("ContentDocumentId")
            location = clean.get("FirstPublishLocationId")
            if document_id and location:
                raise SalesforceError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "FirstPublishLocationId can only be set on the first version of a document",
                    ["FirstPublishLocationId"],
                )
            if location:
                self._existing_id(tuple(OBJECTS), location, "FirstPublishLocationId")
            path = str(clean["PathOnClient"])
            extension = path.rsplit(".", 1)[-1].lower() if "." in path else ""
            version = {
                "Title": clean.get("Title") or (path.rsplit(".", 1)[0] if extension else path),
                "PathOnClient": path,
                "Description": clean.get("Description"),
                "ReasonForChange": clean.get("ReasonForChange"),
                "FirstPublishLocationId": location,
                "OwnerId": actor or None,
                "IsLatest": True,
                "ContentSize": len(data),
                "FileExtension": extension,
                "FileType": {"html": "HTML", "csv": "CSV", "pdf": "PDF", "txt": "TEXT"}.get(extension, "UNKNOWN"),
                "Checksum": hashlib.md5(data).hexdigest(),  # noqa: S324 - Salesforce's checksum is MD5
            }
            if document_id:
                _sobject, document = self._existing_id(("ContentDocument",), document_id, "ContentDocumentId")
                siblings = [
                    row
                    for row in self.records["ContentVersion"].values()
                    if row["ContentDocumentId"] == document["Id"] and not row["IsDeleted"]
                ]
                for sibling in siblings:
                    sibling["IsLatest"] = False
                version.update(ContentDocumentId=document["Id"], VersionNumber=str(len(siblings) + 1))
                version["FirstPublishLocationId"] = siblings[0]["FirstPublishLocationId"] if siblings else None
            else:
                document = self.insert(
                    "ContentDocument", {"Title": version["Title"], "OwnerId": actor or None, "Id": None}
                )
                version.update(ContentDocumentId=document["Id"], VersionNumber="1")
            record = self.insert("ContentVersion", {**version, "Id": None})
            record["VersionData"] = f"/services/data/v{API_VERSION}/sobjects/ContentVersion/{record['Id']}/VersionData"
            self.blobs[record["Id"]] = data
            document.update(
                Title=version["Title"],
                LatestPublishedVersionId=record["Id"],
                FileExtension=extension,
                ContentSize=len(data),
            )
            self._touch(document)
            if not document_id:
                # the owner's link and the record it was first published to, as Salesforce creates them
                targets = [(actor, "I"), (location, "V")] if location else [(actor, "I")]
                for linked, share in targets:
                    if linked:
                        self.insert(
                            "ContentDocumentLink",
                            {
                                "Id": None,
                                "ContentDocumentId": document["Id"],
                                "LinkedEntityId": linked,
                                "ShareType": share,
                                "Visibility": "AllUsers",
                            },
                        )
            return str(record["Id"])

    def version_data(self, version_id: str) -> bytes:
        with self.lock:
            record = self._find(OBJECTS["ContentVersion"], version_id)
            return self.blobs[record["Id"]]

    # --- Chatter (Connect REST API) -----------------------------------------------------------------
    def post_feed_element(self, body: dict[str, Any], actor: str, version: str) -> dict[str, Any]:
        """``POST /chatter/feed-elements`` with a Feed Item Input: Text and Mention segments.

        Not implemented: capabilities (files, polls, links, shares), rich-text markup segments,
        hashtags, ``visibility``, groups as subjects or mentions, ``username`` in a Mention segment.
        """
        if str(body.get("feedElementType") or "") != "FeedItem":
            raise SalesforceError(400, "INVALID_API_INPUT", "feedElementType must be FeedItem")
        subject_id = str(body.get("subjectId") or "")
        if not subject_id:
            raise SalesforceError(400, "MISSING_ARGUMENT", "Missing required 'subjectId' parameter.")
        segments = ((body.get("body") or {}).get("messageSegments")) or []
        if not isinstance(segments, list) or not segments:
            raise SalesforceError(400, "MISSING_ARGUMENT", "Missing required 'body' parameter.")
        with self.lock:
            try:
                _subject_type, subject = self._existing_id(tuple(OBJECTS), subject_id, "subjectId")
            except SalesforceError:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist") from None
            output_segments: list[dict[str, Any]] = []
            mentions = 0
            for segment in segments:
                kind = str((segment or {}).get("type") or "").lower()
                if kind == "text":
                    output_segments.append({"type": "Text", "text": str(segment.get("text") or "")})
                elif kind == "mention":
                    mentions += 1
                    user = self.records["User"].get(str(segment.get("id") or ""))
                    if user is None:
                        user = next(
                            (u for u in self.records["User"].values() if u["Id"][:15] == str(segment.get("id"))[:15]),
                            None,
                        )
                    if user is None:
                        raise SalesforceError(400, "INVALID_ID_FIELD", f"Invalid mention id: {segment.get('id')}")
                    output_segments.append(
                        {
                            "type": "Mention",
                            "text": f"@{user['Name']}",
                            "name": user["Name"],
                            "accessible": True,
                            "record": self._user_summary(user, version),
                        }
                    )
                else:
                    raise SalesforceError(400, "INVALID_API_INPUT", f"Unsupported message segment type: {kind}")
            if mentions > MAX_MENTIONS:
                raise SalesforceError(400, "INVALID_API_INPUT", f"You can mention up to {MAX_MENTIONS} people")
            text = "".join(segment["text"] for segment in output_segments)
            if len(text) > MAX_FEED_TEXT:
                raise SalesforceError(
                    400, "STRING_TOO_LONG", f"Body: data value too large (max length={MAX_FEED_TEXT})"
                )
            record = self.insert(
                "FeedItem",
                {
                    "Id": None,
                    "ParentId": subject["Id"],
                    "Body": text,
                    "Type": "TextPost",
                    "IsRichText": False,
                    "CreatedById": actor or None,
                },
            )
            self.feed_segments[record["Id"]] = output_segments
            return self._feed_item(record, version)

    def _user_summary(self, user: dict[str, Any], version: str) -> dict[str, Any]:
        return {
            "id": user["Id"],
            "name": user["Name"],
            "displayName": user["Name"],
            "type": "User",
            "username": user["Username"],
            "url": f"/services/data/v{version}/chatter/users/{user['Id']}",
        }

    def _feed_item(self, record: dict[str, Any], version: str) -> dict[str, Any]:
        subject_type, subject = self._existing_id(tuple(OBJECTS), record["ParentId"], "subjectId")
        actor = self.records["User"].get(record.get("CreatedById") or "")
        created = parse_datetime(record["CreatedDate"]).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        segments = self.feed_segments.get(record["Id"]) or [{"type": "Text", "text": record.get("Body") or ""}]
        return {
            "actor": self._user_summary(actor, version) if actor else None,
            "body": {"isRichText": False, "messageSegments": segments, "text": record.get("Body") or ""},
            "capabilities": {},
            "createdDate": created,
            "feedElementType": "FeedItem",
            "id": record["Id"],
            "modifiedDate": created,
            "parent": {
                "id": subject["Id"],
                "name": subject.get("Name"),
                "type": subject_type,
                "url": f"/services/data/v{version}/sobjects/{subject_type}/{subject['Id']}",
            },
            "type": "TextPost",
            "url": f"/services/data/v{version}/chatter/feed-elements/{record['Id']}",
        }

    def feed_element(self, element_id: str, version: str) -> dict[str, Any]:
        with self.lock:
            record = self._find(OBJECTS["FeedItem"], element_id)
            return self._feed_item(record, version)

    def record_feed(self, record_id: str, page_token: str | None, page_size: int, version: str) -> dict[str, Any]:
        """``GET /chatter/feeds/record/{id}/feed-elements``: newest first, ``pageSize`` 1-100 (25)."""
        if not 1 <= page_size <= 100:
            raise SalesforceError(400, "INVALID_API_INPUT", "pageSize must be between 1 and 100")
        with self.lock:
            try:
                self._existing_id(tuple(OBJECTS), record_id, "recordId")
            except SalesforceError:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist") from None
            items = sorted(
                (
                    row
                    for row in self.records["FeedItem"].values()
                    if (row["ParentId"] or "")[:15] == record_id[:15] and not row["IsDeleted"]
                ),
                key=lambda row: (row["CreatedDate"], row["Id"]),
                reverse=True,
            )
            offset = int(page_token) if page_token and page_token.isdigit() else 0
            page = items[offset : offset + page_size]
            base = f"/services/data/v{version}/chatter/feeds/record/{record_id}/feed-elements"
            following = offset + page_size
            return {
                "currentPageToken": str(offset) if offset else None,
                "currentPageUrl": f"{base}?pageSize={page_size}" + (f"&page={offset}" if offset else ""),
                "elements": [self._feed_item(row, version) for row in page],
                "isModifiedToken": None,
                "isModifiedUrl": None,
                "nextPageToken": str(following) if following < len(items) else None,
                "nextPageUrl": f"{base}?pageSize={page_size}&page={following}" if following < len(items) else None,
                "updatesToken": None,
                "updatesUrl": None,
            }
