"""Salesforce hook: the provider's hook, able to reach any login/instance URL with its own CA.

The provider's ``SalesforceHook`` always logs in at ``https://{domain}.salesforce.com`` and only
takes ``session_id`` from its constructor. Real deployments need more (sandboxes, My Domain,
proxies, private CAs), and so does the local sandbox. Connection fields:

- login / password, extra ``security_token``: SOAP login (``/services/Soap/u/{version}``);
- extra ``consumer_key`` + ``consumer_secret`` with login/password: OAuth password grant;
- extra ``consumer_key`` + ``private_key`` (PEM) or ``private_key_file_path`` with login: JWT bearer;
- extra ``session_id`` (+ ``instance_url``): an existing session, no login;
- extra ``login_url`` (default ``https://login.salesforce.com``), ``instance_url``, ``ca_bundle``
  (PEM file trusted instead of the system store), ``version`` (default 59.0).

Queries page transparently; an expired session (401 ``INVALID_SESSION_ID``) triggers one re-login
per call, never a loop. API usage from ``Sforce-Limit-Info`` is exposed as ``api_usage``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from airflow.providers.salesforce.hooks.salesforce import SalesforceHook as ProviderSalesforceHook

from ps_integrations.exceptions import SalesforceApiError

log = logging.getLogger(__name__)

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
DEFAULT_VERSION = "59.0"
COLLECTION_LIMIT = 200
T = TypeVar("T")


@dataclass(frozen=True)
class ApiUsage:
    used: int
    limit: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit if self.limit else 0.0

    def describe(self) -> str:
        return f"Salesforce API usage {self.used}/{self.limit} ({self.percent:.0f}%)"


def _error_from(exception: Exception) -> SalesforceApiError:
    """Turn a simple-salesforce exception into ``SalesforceApiError(errorCode, message)``."""
    content = getattr(exception, "content", None)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return SalesforceApiError(str(content[0].get("errorCode")), str(content[0].get("message", "")).strip())
    code = getattr(exception, "code", None) or type(exception).__name__
    message = getattr(exception, "message", None) or str(exception)
    return SalesforceApiError(str(code), str(message))


class SalesforceHook(ProviderSalesforceHook):
    """Salesforce through simple-salesforce, with configurable URLs, CA bundle and re-login."""

    conn_name_attr = "salesforce_conn_id"
    default_conn_name = "salesforce_default"
    conn_type = "salesforce"
    hook_name = "Salesforce"

    def __init__(self, salesforce_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(salesforce_conn_id=salesforce_conn_id, **kwargs)
        self.logins = 0
        self.relogins = 0
        self.pages = 0
        self.child_pages = 0
        self._described: dict[str, set[str]] = {}

    # --- connection ------------------------------------------------------------------------------
    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.conn_id)

    def _field(self, name: str) -> Any:
        """An extra field, ``""`` read as None (the UI stores blanks as empty strings)."""
        value = self._connection.extra_dejson.get(name)
        return None if value == "" else value

    @cached_property
    def version(self) -> str:
        return str(self._field("version") or DEFAULT_VERSION)

    @cached_property
    def login_url(self) -> str:
        return str(self._field("login_url") or DEFAULT_LOGIN_URL).rstrip("/")

    @cached_property
    def http_session(self) -> Any:
        """A requests session that trusts the configured CA (``trust_env`` off: no env overrides)."""
        import requests

        session = requests.Session()
        ca_bundle = self._field("ca_bundle")
        if ca_bundle:
            session.trust_env = False
            session.verify = ca_bundle
        return session

    def _login(self) -> tuple[str, str]:
        """Log in by the configured mode; return ``(session_id, instance_url)``."""
        from simple_salesforce.exceptions import SalesforceAuthenticationFailed

        connection = self._connection
        consumer_key = self._field("consumer_key")
        private_key = self._field("private_key")
        if not private_key and self._field("private_key_file_path"):
            with open(self._field("private_key_file_path"), encoding="utf-8") as handle:
                private_key = handle.read()
        try:
            if consumer_key and private_key:
                session_id, instance = self._jwt_login(connection.login, consumer_key, private_key)
            elif consumer_key and self._field("consumer_secret"):
                session_id, instance = self._token_login(
                    {
                        "grant_type": "password",
                        "client_id": consumer_key,
                        "client_secret": self._field("consumer_secret"),
                        "username": connection.login,
                        "password": (connection.password or "") + (self._field("security_token") or ""),
                    }
                )
            else:
                from simple_salesforce.login import SalesforceLogin

                session_id, instance = SalesforceLogin(
                    username=connection.login,
                    password=connection.password,
                    security_token=self._field("security_token") or "",
                    sf_version=self.version,
                    session=self.http_session,
                    scratch_url=self.login_url,
                )
        except SalesforceAuthenticationFailed as error:
            raise SalesforceApiError(str(error.code), error.auth_message) from None
        self.logins += 1
        instance_url = self._field("instance_url") or f"https://{instance}"
        log.info("Logged in to Salesforce at %s", instance_url)
        return session_id, instance_url

    def _token_login(self, data: dict[str, Any]) -> tuple[str, str]:
        from simple_salesforce.login import token_login

        return token_login(
            f"{self.login_url}/services/oauth2/token",
            data,
            "login",
            data.get("client_id", ""),
            None,
            None,
            self.http_session,
        )

    def _jwt_login(self, username: str, consumer_key: str, private_key: str) -> tuple[str, str]:
        import jwt

        assertion = jwt.encode(
            {"iss": consumer_key, "sub": username, "aud": self.login_url, "exp": int(time.time()) + 180},
            private_key,
            algorithm="RS256",
        )
        return self._token_login(
            {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
                "client_id": consumer_key,
            }
        )

    def _client(self, session_id: str, instance_url: str) -> Any:
        from simple_salesforce import Salesforce

        return Salesforce(
            instance_url=instance_url, session_id=session_id, version=self.version, session=self.http_session
        )

    @cached_property
    def conn(self) -> Any:
        """A simple-salesforce client for the session (logging in unless a session id is configured)."""
        session_id = self.session_id or self._field("session_id")
        if session_id:
            instance_url = self._field("instance_url")
            if not instance_url:
                raise SalesforceApiError("CONFIGURATION", "a session_id needs instance_url in the connection extra")
            return self._client(session_id, instance_url)
        return self._client(*self._login())

    def get_conn(self) -> Any:
        return self.conn

    def _relogin(self) -> None:
        self.relogins += 1
        session_id, _instance_url = self._login()
        client = self.conn
        client.session_id = session_id
        client.headers["Authorization"] = "Bearer " + session_id

    def _call(self, action: Callable[[Any], T]) -> T:
        """Run one API call; on an expired session log in again once and retry once."""
        from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

        try:
            return action(self.conn)
        except SalesforceExpiredSession:
            if self.session_id or self._field("session_id"):
                raise SalesforceApiError("INVALID_SESSION_ID", "the configured session expired") from None
            log.warning("Salesforce session expired; logging in again")
            self._relogin()
            try:
                return action(self.conn)
            except SalesforceError as error:
                raise _error_from(error) from None
        except SalesforceError as error:
            raise _error_from(error) from None

    # --- operations ---------------------------------------------------------------------------------
    def query_records(
        self, soql: str, include_deleted: bool = False, batch_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every record of a SOQL query, following ``nextRecordsUrl`` page by page.

        :param soql: the query.
        :param include_deleted: use ``queryAll`` (deleted and archived records too).
        :param batch_size: page size hint (``Sforce-Query-Options``; 200-2000).
        :return: records as Salesforce returns them (with ``attributes``).
        """
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        try:

            def first_page(client: Any) -> dict[str, Any]:
                return client.query(soql, include_deleted=include_deleted, headers=headers)

            page = self._call(first_page)
        except SalesforceApiError as error:
            raise SalesforceApiError(error.code, f"{error.message} (query: {soql})") from None
        self.pages = 1
        while True:
            for record in page["records"]:
                yield self._complete_children(record, headers)
            if page.get("done", True):
                return
            next_url = page["nextRecordsUrl"]

            def next_page(client: Any, url: str = next_url) -> dict[str, Any]:
                return client.query_more(url, identifier_is_url=True, headers=headers)

            page = self._call(next_page)
            self.pages += 1

    def _complete_children(self, record: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """Read the rest of every partial child relationship (``done: false`` with its own
        ``nextRecordsUrl`` inside the parent record), so no line item or contact is dropped."""
        for name, value in list(record.items()):
            if not (isinstance(value, dict) and "records" in value and value.get("done") is False):
                continue
            children = list(value["records"])
            result = value
            while not result.get("done", True) and result.get("nextRecordsUrl"):

                def more(client: Any, url: str = result["nextRecordsUrl"]) -> dict[str, Any]:
                    return client.query_more(url, identifier_is_url=True, headers=headers)

                result = self._call(more)
                self.child_pages += 1
                children.extend(result.get("records") or [])
            record[name] = {**value, "done": True, "records": children, "nextRecordsUrl": None}
        return record

    def describe_fields(self, sobject: str) -> set[str]:
        """The field names the org has on ``sobject`` (``describe``), once per hook instance.

        :param sobject: e.g. ``Opportunity``.
        :return: field API names, e.g. without ``CurrencyIsoCode`` in an org without multi-currency.
        """
        if sobject not in self._described:

            def describe(client: Any) -> dict[str, Any]:
                return getattr(client, sobject).describe()

            self._described[sobject] = {str(field["name"]) for field in self._call(describe).get("fields") or []}
        return self._described[sobject]

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        def get(client: Any) -> dict[str, Any]:
            return getattr(client, sobject).get(record_id)

        return self._call(get)

    def update_record(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """PATCH one record (204 from Salesforce)."""

        def update(client: Any) -> Any:
            return getattr(client, sobject).update(record_id, fields)

        self._call(update)

    def update_records(self, sobject: str, updates: dict[str, dict[str, Any]]) -> dict[str, str | None]:
        """Update many records through sObject collections (200 per call, not all-or-none).

        :return: record id -> None on success or the error ``CODE: message``.
        """
        results: dict[str, str | None] = {}
        items = list(updates.items())
        for start in range(0, len(items), COLLECTION_LIMIT):
            chunk = items[start : start + COLLECTION_LIMIT]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": sobject}, "id": record_id, **fields} for record_id, fields in chunk
                ],
            }

            def patch(client: Any, body: dict[str, Any] = body) -> list[dict[str, Any]]:
                return client.restful("composite/sobjects", method="PATCH", json=body)

            response = self._call(patch)
            for (record_id, _fields), outcome in zip(chunk, response, strict=True):
                errors = outcome.get("errors") or []
                results[record_id] = (
                    None
                    if outcome.get("success")
                    else "; ".join(f"{error.get('statusCode')}: {error.get('message')}" for error in errors)
                )
        return results

    @property
    def api_usage(self) -> ApiUsage | None:
        """API usage from the last response's ``Sforce-Limit-Info`` header, if any."""
        usage = getattr(self.conn, "api_usage", {}).get("api-usage")
        return ApiUsage(usage.used, usage.total) if usage else None

    def test_connection(self) -> tuple[bool, str]:
        try:
            list(self.query_records("SELECT Id FROM User LIMIT 1"))
        except Exception as error:
            return False, str(error)
        usage = self.api_usage
        return True, "Connection successfully tested" + (f"; {usage.describe()}" if usage else "")
