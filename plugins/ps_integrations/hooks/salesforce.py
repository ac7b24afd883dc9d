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
from ps_integrations.hooks.salesforce_reads import SalesforceReads, _price_book_product
from ps_integrations.hooks.salesforce_records import (
    SOQL_FIELD,
    OpportunityBudget,
    OpportunityContacts,
    OpportunityLine,
    soql_string,
)

log = logging.getLogger(__name__)
__all__ = [  # records defined beside this module, re-exported here
    "SOQL_FIELD",
    "OpportunityBudget",
    "OpportunityContacts",
    "OpportunityLine",
    "SalesforceHook",
    "_price_book_product",
    "soql_string",
]

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


class SalesforceHook(SalesforceReads, ProviderSalesforceHook):
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

    # --- users, files and Chatter (issue #22: engagement close-out) -----------------------------------
    def find_users(self, identifiers: list[str]) -> dict[str, dict[str, Any]]:
        """Users by username or e-mail address (either matches, case-insensitively).

        :param identifiers: usernames or e-mail addresses.
        :return: each identifier (lower-cased) found -> ``{Id, Name, Username, Email, IsActive}``;
            an e-mail shared by several users resolves to the active one first, then the lowest Id.
        """
        wanted = sorted({identifier.strip().lower() for identifier in identifiers if identifier.strip()})
        if not wanted:
            return {}
        quoted = ", ".join(soql_string(identifier) for identifier in wanted)
        soql = (
            "SELECT Id, Name, Username, Email, IsActive FROM User "  # noqa: S608 - values are escaped
            f"WHERE Username IN ({quoted}) OR Email IN ({quoted}) ORDER BY Id"
        )
        found: dict[str, dict[str, Any]] = {}
        for record in self.query_records(soql):
            user = {key: record.get(key) for key in ("Id", "Name", "Username", "Email", "IsActive")}
            for key in (str(record.get("Username") or "").lower(), str(record.get("Email") or "").lower()):
                if key in wanted and (key not in found or (user["IsActive"] and not found[key]["IsActive"])):
                    found[key] = user
        return found

    def create_content_version(
        self,
        title: str,
        path_on_client: str,
        data: bytes,
        first_publish_location_id: str | None = None,
        content_document_id: str | None = None,
        description: str | None = None,
        reason_for_change: str | None = None,
    ) -> str:
        """Upload a file (``ContentVersion`` insert with base64 ``VersionData``).

        :param first_publish_location_id: the record a new document is shared with (first version only).
        :param content_document_id: add a new version to this document instead of creating one.
        :return: the ContentVersion Id.
        """
        import base64

        fields: dict[str, Any] = {
            "Title": title,
            "PathOnClient": path_on_client,
            "VersionData": base64.b64encode(data).decode("ascii"),
        }
        if first_publish_location_id:
            fields["FirstPublishLocationId"] = first_publish_location_id
        if content_document_id:
            fields["ContentDocumentId"] = content_document_id
        if description is not None:
            fields["Description"] = description
        if reason_for_change is not None:
            fields["ReasonForChange"] = reason_for_change

        def create(client: Any) -> dict[str, Any]:
            return client.ContentVersion.create(fields)

        return str(self._call(create)["id"])

    def content_versions(self, document_id: str | None = None, location_id: str | None = None) -> list[dict[str, Any]]:
        """Versions of one document, or of the documents first published to a record, oldest first.

        :return: ``{Id, ContentDocumentId, VersionNumber, Title, Description, IsLatest, ContentSize}`` each.
        """
        if bool(document_id) == bool(location_id):
            raise ValueError("give exactly one of document_id and location_id")
        column, value = ("ContentDocumentId", document_id) if document_id else ("FirstPublishLocationId", location_id)
        soql = (
            "SELECT Id, ContentDocumentId, VersionNumber, Title, Description, IsLatest, ContentSize "  # noqa: S608
            f"FROM ContentVersion WHERE {column} = {soql_string(str(value))} ORDER BY CreatedDate, Id"
        )
        return [
            {key: value for key, value in record.items() if key != "attributes"} for record in self.query_records(soql)
        ]

    def version_data(self, version_id: str) -> bytes:
        """The bytes of one file version (``/sobjects/ContentVersion/{id}/VersionData``)."""

        def download(client: Any) -> bytes:
            url = f"{client.base_url}sobjects/ContentVersion/{version_id}/VersionData"
            return client._call_salesforce("GET", url, name="VersionData").content

        return self._call(download)

    def post_feed_item(self, subject_id: str, segments: list[dict[str, str]]) -> dict[str, Any]:
        """Post to a record's Chatter feed (Connect REST ``POST /chatter/feed-elements``).

        :param segments: message segments, e.g. ``{"type": "Text", "text": "..."}`` and
            ``{"type": "Mention", "id": "005..."}`` (spaces around mentions are not added).
        :return: the Feed Item as Salesforce returns it (``id``, ``body.text``, ``body.messageSegments``...).
        """
        body = {"body": {"messageSegments": segments}, "feedElementType": "FeedItem", "subjectId": subject_id}

        def post(client: Any) -> dict[str, Any]:
            return client.restful("chatter/feed-elements", method="POST", json=body)

        return self._call(post)

    def record_feed(self, record_id: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every feed element of a record's feed, newest first, following ``nextPageUrl``."""
        path: str | None = f"chatter/feeds/record/{record_id}/feed-elements?pageSize={page_size}"
        while path:

            def get(client: Any, path: str = path) -> dict[str, Any]:
                return client.restful(path)

            page = self._call(get)
            yield from page.get("elements") or []
            next_url = page.get("nextPageUrl")
            path = next_url.split(f"/services/data/v{self.version}/", 1)[-1] if next_url else None

    # --- opportunity sync ---
    def record_url_base(self) -> str:
        """``https://<instance>`` of the logged-in org (for Lightning record links), or ``""`` when unknown."""
        instance = getattr(self.conn, "sf_instance", "")
        return f"https://{instance}" if instance else ""
