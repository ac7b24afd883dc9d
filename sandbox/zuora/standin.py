"""Zuora's SOAP API on the real WSDL: ``?wsdl``, ``login``, ``query``, ``queryMore``.

Requests are routed on the Body element (every operation has ``soapAction=""``) and read with
zeep's own deserialiser for the WSDL messages; responses and fault details are serialised by zeep
from the WSDL's types (sequence order, ``Id`` first, null fields omitted, records typed with
``xsi:type``), so a zeep client on the real WSDL parses them. Faults are SOAP 1.1 faults with
``fns:<CODE>`` and Zuora's fault element in ``detail``.
"""

from __future__ import annotations

import math
import threading
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response
from zeep.helpers import serialize_object

from sandbox.core.faults import Fault
from sandbox.core.standin import StandIn
from sandbox.zuora.models import CATALOG_OBJECTS, ZuoraBackend, ZuoraFaultError

WSDL_PATH = Path(__file__).resolve().parents[2] / "include" / "zuora" / "zuora.a.78.0.wsdl"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_NS = "http://fault.api.zuora.com/"
SERVICE_PATH = "/apps/services/a/78.0"
REAL_ADDRESS = "https://www.zuora.com/apps/services/a/78.0"
OPERATIONS = ("login", "query", "queryMore")
RETRY_AFTER_SECONDS = 120  # what Zuora sends with REQUEST_EXCEEDED_LIMIT


@cache
def wsdl_client() -> Any:
    import zeep

    return zeep.Client(str(WSDL_PATH))


@cache
def field_types() -> dict[str, dict[str, str]]:
    client = wsdl_client()
    types = {}
    for name in CATALOG_OBJECTS:
        xsd_type = client.get_type(f"{{http://object.api.zuora.com/}}{name}")
        types[name] = {
            element_name: element.type.name
            for element_name, element in xsd_type.elements
            if element_name != "fieldsToNull"
        }
    return types


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True)


class ZuoraStandIn(StandIn):
    name = "zuora"
    https = True
    default_retry_after = float(RETRY_AFTER_SECONDS)

    def __init__(self) -> None:
        self.backend = ZuoraBackend(field_types())
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        super().__init__()

    def rules(self) -> list[Rule]:
        return [Rule(SERVICE_PATH, endpoint="service", methods=["GET", "POST"])]

    def load_seed(self, seed: dict[str, Any]) -> None:
        super().load_seed(seed)
        self.backend.load(seed)

    def state(self) -> dict[str, Any]:
        return self.backend.state()

    def airflow_connections(self, ca_bundle: str | None) -> dict[str, dict[str, Any]]:
        user = (self.seed.get("users") or [{}])[0]
        if not user:
            return {}
        return {
            "zuora_default": {
                "conn_type": "ps_zuora",
                "host": f"{self.base_url}{SERVICE_PATH}",
                "login": user["username"],
                "password": user["password"],
                "extra": {"ca_bundle": ca_bundle},
            }
        }

    # --- routing on the Body element ---------------------------------------------------------------
    def operation_name(self, request: Request, endpoint: str) -> str:
        if request.method == "GET":
            return "wsdl"
        try:
            envelope = etree.fromstring(request.get_data(), _parser())
            body = envelope.find(f"{{{SOAP_ENV}}}Body")
            first = body[0] if body is not None and len(body) else None
            return etree.QName(first).localname if first is not None else "unknown"
        except etree.XMLSyntaxError:
            return "unknown"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._in_flight_lock:
            self._in_flight += 1
            too_many = self._in_flight > self.backend.concurrency_limit
        try:
            if too_many:
                response = self.render_rate_limited(Fault("rate_limited", 429, retry_after=self._retry_after()))
                return response(environ, start_response)
            return super().__call__(environ, start_response)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _retry_after(self) -> int:
        return max(0, math.ceil(RETRY_AFTER_SECONDS * self.faults.config.retry_after_scale))

    # --- faults in Zuora's shape ---------------------------------------------------------------------
    def fault_response(self, error: ZuoraFaultError) -> Response:
        client = wsdl_client()
        nsmap = {"soapenv": SOAP_ENV, "fns": FAULT_NS}
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=nsmap)
        fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
        etree.SubElement(fault, "faultcode").text = f"fns:{error.code}"
        etree.SubElement(fault, "faultstring").text = error.message
        detail = etree.SubElement(fault, "detail")
        element = client.get_element(f"{{{FAULT_NS}}}{error.fault_type}")
        element.render(detail, element(FaultCode=error.code, FaultMessage=error.message))
        headers = {"Retry-After": str(self._retry_after())} if error.status == 429 else None
        return Response(
            etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"),
            status=error.status,
            headers=headers,
            mimetype="text/xml",
        )

    def render_server_error(self, status: int) -> Response:
        return self.fault_response(ZuoraFaultError("UNKNOWN_ERROR", "An unexpected error occurred", status=status))

    def render_rate_limited(self, fault: Fault) -> Response:
        error = ZuoraFaultError(
            "REQUEST_EXCEEDED_LIMIT", "Your request has exceeded the concurrent request limit.", status=429
        )
        response = self.fault_response(error)
        response.headers["Retry-After"] = str(fault.retry_after)
        return response

    def render_session_expired(self) -> Response:
        return self.fault_response(ZuoraFaultError("INVALID_SESSION", "Invalid session"))

    def render_not_found(self, message: str = "Not Found") -> Response:
        return Response(message, status=404, mimetype="text/plain")

    def render_bad_request(self, message: str = "Bad request") -> Response:
        return self.fault_response(ZuoraFaultError("MALFORMED_QUERY", message, "MalformedQueryFault"))

    # --- the service ---------------------------------------------------------------------------------
    def service(self, request: Request) -> Response:
        if request.method == "GET":
            if "wsdl" not in request.args:
                return Response("Use ?wsdl", status=400, mimetype="text/plain")
            text = WSDL_PATH.read_text(encoding="utf-8").replace(REAL_ADDRESS, f"{self.base_url}{SERVICE_PATH}")
            return Response(text, mimetype="text/xml")
        operation_name = self.operation_name(request, "service")
        if operation_name not in OPERATIONS:
            return self.fault_response(
                ZuoraFaultError("UNKNOWN_ERROR", f"operation {operation_name} is not supported by the sandbox")
            )
        operation = wsdl_client().service._binding._operations[operation_name]
        try:
            message = operation.input.deserialize(etree.fromstring(request.get_data(), _parser()))
            try:  # operations with header parts come back as {header, body}; others as the body
                header, body = serialize_object(message["header"]) or {}, message["body"]
            except (KeyError, AttributeError):
                header, body = {}, message
            return getattr(self, f"_{operation_name}")(operation, header, body)
        except ZuoraFaultError as error:
            return self.fault_response(error)

    def _serialize(self, operation: Any, **values: Any) -> Response:
        envelope = operation.output.serialize(**values).content
        return Response(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"), mimetype="text/xml")

    def _session(self, header: Any) -> None:
        session = (header.get("SessionHeader") or {}).get("session") if header else None
        if self.sessions.principal(session) is None:
            raise ZuoraFaultError("INVALID_SESSION", "Invalid session")

    @staticmethod
    def _batch_size(header: Any) -> int | None:
        options = (header.get("QueryOptions") or {}) if header else {}
        return options.get("batchSize")

    def _login(self, operation: Any, header: Any, body: Any) -> Response:
        username, password = body["username"] or "", body["password"] or ""
        if not self.backend.check_login(username, password):
            raise ZuoraFaultError("INVALID_VALUE", "Invalid login. User name and password do not match.", "LoginFault")
        result = wsdl_client().get_type("{http://api.zuora.com/}LoginResult")(
            Session=self.sessions.issue(username), ServerUrl=f"{self.base_url}{SERVICE_PATH}"
        )
        return self._serialize(operation, result=result)

    def _query_result(self, operation: Any, page: dict[str, Any]) -> Response:
        client = wsdl_client()
        record_type = client.get_type(f"{{http://object.api.zuora.com/}}{page['zobject']}")
        records = [
            record_type(**{key: value for key, value in record.items() if value is not None})
            for record in page["records"]
        ]
        result = client.get_type("{http://api.zuora.com/}QueryResult")(
            done=page["done"], queryLocator=page["queryLocator"], records=records, size=page["size"]
        )
        return self._serialize(operation, result=result)

    def _query(self, operation: Any, header: Any, body: Any) -> Response:
        self._session(header)
        return self._query_result(operation, self.backend.query(body["queryString"] or "", self._batch_size(header)))

    def _queryMore(self, operation: Any, header: Any, body: Any) -> Response:
        self._session(header)
        return self._query_result(
            operation, self.backend.query_more(body["queryLocator"] or "", self._batch_size(header))
        )
