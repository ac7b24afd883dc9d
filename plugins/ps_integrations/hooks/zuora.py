"""Zuora hook: the SOAP API through zeep with the real WSDL (``include/zuora/zuora.a.78.0.wsdl``).

Connection (type ``ps_zuora``): host = the SOAP service URL (e.g.
``https://www.zuora.com/apps/services/a/78.0``; ``apisandbox.zuora.com`` for a sandbox tenant),
login / password of an API user; extras ``ca_bundle``, ``batch_size`` (0-2000, 0 = 2000),
``max_wait_seconds`` (cap on the total 429 back-off, default 300), ``max_retries`` (transient
``UNKNOWN_ERROR``, default 3), ``timeout`` (default 120).

``query`` pages through ``queryMore`` transparently. ``INVALID_SESSION`` (also in the middle of
paging) logs in again once and restarts the query, skipping records already returned; an expired
query locator restarts the query once the same way. 429 ``REQUEST_EXCEEDED_LIMIT`` waits the
``Retry-After`` the response carried (zeep's ``Fault`` hides HTTP headers, so a transport keeps
the last response) until ``max_wait_seconds`` is used up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, TypeVar

from airflow.sdk import BaseHook

from ps_integrations.exceptions import ZuoraFault
from ps_integrations.paths import INCLUDE_DIR

log = logging.getLogger(__name__)

WSDL = INCLUDE_DIR / "zuora" / "zuora.a.78.0.wsdl"
BINDING = "{http://api.zuora.com/}SoapBinding"
T = TypeVar("T")


def _fault_code(fault: Any) -> str:
    """``fns:INVALID_SESSION`` -> ``INVALID_SESSION``; an expired locator -> ``INVALID_QUERY_LOCATOR``.

    Zuora reports an expired locator as ``INVALID_VALUE`` inside an ``InvalidQueryLocatorFault``.
    """
    detail = getattr(fault, "detail", None)
    code = str(getattr(fault, "code", "") or "UNKNOWN_ERROR").split(":")[-1]
    if detail is not None:
        for element in detail.iter():
            tag = str(element.tag)
            if tag.endswith("}InvalidQueryLocatorFault"):
                return "INVALID_QUERY_LOCATOR"
            if tag.endswith("FaultCode") and element.text:
                code = element.text.strip()
    return code


def _plain_record(record: Any) -> dict[str, Any]:
    """A zObject as a dict of the fields it has (nulls and ``fieldsToNull`` left out).

    Reads zeep's parsed values directly: ``serialize_object`` walks every field of the WSDL type (26
    for a Product, most of them null) through two recursive calls each, a sixth of the fetch's client
    CPU (cProfile of ``bench/bench_sku_reconciliation.py``). Nested values (none in the catalog
    objects) still go through it.
    """
    from zeep.helpers import serialize_object
    from zeep.xsd.valueobjects import CompoundValue

    plain = {}
    for key, value in record.__values__.items():
        if value is None or key == "fieldsToNull":
            continue
        plain[key] = serialize_object(value, dict) if isinstance(value, CompoundValue | list) else value
    return plain


class ZuoraHook(BaseHook):
    """Zuora's SOAP API (login, query, queryMore) for one connection."""

    conn_name_attr = "zuora_conn_id"
    default_conn_name = "zuora_default"
    conn_type = "ps_zuora"
    hook_name = "Zuora SOAP (ps-integrations)"

    def __init__(
        self, zuora_conn_id: str = default_conn_name, sleep: Callable[[float], None] = time.sleep, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.zuora_conn_id = zuora_conn_id
        self._sleep = sleep
        self._session_id: str | None = None
        self._server_url: str | None = None
        self.calls: dict[str, int] = {}
        self.logins = 0
        self.waited_seconds = 0.0

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "SOAP service URL", "login": "API user"},
            "placeholders": {"host": "https://www.zuora.com/apps/services/a/78.0", "extra": '{"batch_size": 2000}'},
        }

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.zuora_conn_id)

    def _field(self, name: str, default: Any = None) -> Any:
        value = self._connection.extra_dejson.get(name)
        return default if value in (None, "") else value

    @cached_property
    def transport(self) -> Any:
        """A zeep transport that remembers the last HTTP response (for ``Retry-After``)."""
        import requests
        from zeep.transports import Transport

        class RecordingTransport(Transport):
            last_response: Any = None

            def post(self, address: str, message: Any, headers: Any) -> Any:
                response = super().post(address, message, headers)
                self.last_response = response
                return response

        session = requests.Session()
        if self._field("ca_bundle"):
            session.trust_env = False
            session.verify = self._field("ca_bundle")
        return RecordingTransport(
            session=session,
            timeout=float(self._field("timeout", 120)),
            operation_timeout=float(self._field("timeout", 120)),
        )

    @cached_property
    def client(self) -> Any:
        import zeep

        return zeep.Client(
            str(WSDL), transport=self.transport, settings=zeep.Settings(strict=False, xml_huge_tree=True)
        )

    def get_conn(self) -> Any:
        return self.client

    def _service(self, address: str) -> Any:
        return self.client.create_service(BINDING, address)

    @property
    def endpoint(self) -> str:
        """The SOAP service URL of the connection (no credentials), for reports saying where data came from."""
        return str(self._connection.host or "")

    # --- calls ------------------------------------------------------------------------------------
    def login(self) -> str:
        """Log in; later calls go to the ``ServerUrl`` Zuora returned."""
        connection = self._connection
        if not connection.host:
            raise ZuoraFault("CONFIGURATION", f"connection {self.zuora_conn_id!r} has no host (the SOAP service URL)")
        result = self._call(
            "login",
            lambda: self._service(connection.host).login(username=connection.login, password=connection.password),
        )
        self._session_id, self._server_url = result.Session, result.ServerUrl
        self.logins += 1
        log.info("Logged in to Zuora (%s)", self._server_url)
        return str(self._session_id)

    def _headers(self, batch_size: int | None) -> dict[str, Any]:
        headers: dict[str, Any] = {"SessionHeader": {"session": self._session_id}}
        if batch_size is not None:
            headers["QueryOptions"] = {"batchSize": batch_size}
        return headers

    def _call(self, name: str, action: Callable[[], T]) -> T:
        """One SOAP call with back-off on 429 and retries on transient errors."""
        import zeep.exceptions

        max_wait = float(self._field("max_wait_seconds", 300))
        retries_left = int(self._field("max_retries", 3))
        attempt = 0
        while True:
            self.calls[name] = self.calls.get(name, 0) + 1
            try:
                return action()
            except zeep.exceptions.Fault as fault:
                code = _fault_code(fault)
                response = getattr(self.transport, "last_response", None)
                if code == "REQUEST_EXCEEDED_LIMIT" or (response is not None and response.status_code == 429):
                    retry_after = float((response.headers.get("Retry-After") if response is not None else None) or 60)
                    if self.waited_seconds + retry_after > max_wait:
                        raise ZuoraFault(
                            "REQUEST_EXCEEDED_LIMIT",
                            f"{name}: still rate-limited after waiting {self.waited_seconds:.0f}s; "
                            f"Retry-After {retry_after:.0f}s would pass max_wait_seconds={max_wait:.0f}",
                        ) from None
                    log.warning(
                        "Zuora %s: 429 REQUEST_EXCEEDED_LIMIT, waiting %.0fs as Retry-After asks", name, retry_after
                    )
                    self.waited_seconds += retry_after
                    self._sleep(retry_after)
                    continue
                if code in ("UNKNOWN_ERROR", "TEMPORARY_ERROR", "SERVER_UNAVAILABLE") and retries_left > 0:
                    retries_left -= 1
                    attempt += 1
                    log.warning("Zuora %s: %s, retrying (%d left)", name, code, retries_left)
                    self._sleep(min(2.0**attempt * 0.5, 30.0))
                    continue
                raise ZuoraFault(code, str(fault.message)) from None
            except zeep.exceptions.TransportError as error:
                if error.status_code >= 500 and retries_left > 0:
                    retries_left -= 1
                    attempt += 1
                    self._sleep(min(2.0**attempt * 0.5, 30.0))
                    continue
                raise ZuoraFault(f"HTTP_{error.status_code}", str(error.message)) from None

    def query(self, zoql: str, batch_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a ZOQL query as a plain dict, paging through ``queryMore``.

        :param zoql: the query (one object, Zuora's ZOQL rules).
        :param batch_size: records per call (0-2000; 0 and None mean 2000).
        """
        if batch_size is None and self._field("batch_size") is not None:
            batch_size = int(self._field("batch_size"))
        returned: set[str] = set()
        restarts = {"INVALID_SESSION": 0, "INVALID_QUERY_LOCATOR": 0}
        while True:
            try:
                for record in self._pages(zoql, batch_size):
                    record_id = str(record.get("Id"))
                    if record_id in returned:
                        continue
                    returned.add(record_id)
                    yield record
                return
            except ZuoraFault as fault:
                kind = fault.code
                if kind in restarts and restarts[kind] == 0:
                    restarts[kind] += 1
                    log.warning(
                        "Zuora %s while reading %r; restarting the query (%d records already read)",
                        kind,
                        zoql,
                        len(returned),
                    )
                    if kind == "INVALID_SESSION":
                        self.login()
                    continue
                if fault.code == "MALFORMED_QUERY":
                    raise ZuoraFault(fault.code, f"{fault.message} (query: {zoql})") from None
                raise

    def _pages(self, zoql: str, batch_size: int | None) -> Iterator[dict[str, Any]]:
        if self._session_id is None:
            self.login()
        service = self._service(self._server_url or self._connection.host)
        result = self._call("query", lambda: service.query(queryString=zoql, _soapheaders=self._headers(batch_size)))
        while True:
            for record in result.records or []:
                yield _plain_record(record)
            if result.done:
                return
            locator: str = result.queryLocator

            def more(locator: str = locator) -> Any:
                return service.queryMore(queryLocator=locator, _soapheaders=self._headers(batch_size))

            result = self._call("queryMore", more)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.login()
            next(iter(self.query("select Id from Product")), None)
        except Exception as error:
            return False, str(error)
        return True, "Connection successfully tested"
