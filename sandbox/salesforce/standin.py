"""Salesforce's wire protocol over HTTPS: SOAP and OAuth login, REST query/queryAll and sObjects.

Every REST response carries ``Sforce-Limit-Info: api-usage=N/M``; each authenticated REST call
counts against the daily limit (logins do not). Errors use Salesforce's JSON array shape
``[{"message": ..., "errorCode": ...}]``; login failures use its SOAP ``LoginFault`` and OAuth
``{"error", "error_description"}`` shapes.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ps_integrations import clock
from sandbox.core.faults import Fault
from sandbox.core.standin import StandIn, json_response
from sandbox.salesforce.models import SalesforceBackend, SalesforceError

PARTNER_NS = "urn:partner.soap.sforce.com"

LOGIN_RESPONSE = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\
<soapenv:Body><loginResponse><result>\
<metadataServerUrl>{base}/services/Soap/m/{version}/{org_id}</metadataServerUrl>\
<passwordExpired>false</passwordExpired><sandbox>true</sandbox>\
<serverUrl>{base}/services/Soap/u/{version}/{org_id}</serverUrl>\
<sessionId>{session_id}</sessionId><userId>{user_id}</userId>\
<userInfo><organizationId>{org_id}</organizationId><userEmail>{username}</userEmail>\
<userFullName>{full_name}</userFullName><userId>{user_id}</userId><userName>{username}</userName>\
</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"""

SOAP_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\
<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>\
<faultstring>{code}: {message}</faultstring><detail><sf:{fault_type} xsi:type="sf:{fault_type}">\
<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage>\
</sf:{fault_type}></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"""

INVALID_LOGIN = "Invalid username, password, security token; or user locked out."
API_PATH = "/services/data/v<version>"


def soap_fault(code: str, message: str, fault_type: str = "LoginFault", status: int = 500) -> Response:
    body = SOAP_FAULT.format(code=code, message=escape(message), fault_type=fault_type)
    return Response(body, status=status, mimetype="text/xml")


class SalesforceStandIn(StandIn):
    name = "salesforce"
    https = True

    def __init__(self) -> None:
        self.backend = SalesforceBackend()
        super().__init__()

    def rules(self) -> list[Rule]:
        return [
            Rule("/services/Soap/u/<version>", endpoint="soap_login", methods=["POST"]),
            Rule("/services/oauth2/token", endpoint="oauth_token", methods=["POST"]),
            Rule("/services/data/", endpoint="versions", methods=["GET"]),
            Rule(f"{API_PATH}/limits", endpoint="limits", methods=["GET"]),
            Rule(f"{API_PATH}/query", endpoint="query", methods=["GET"]),
            Rule(f"{API_PATH}/query/<locator>", endpoint="query_more", methods=["GET"]),
            Rule(f"{API_PATH}/queryAll", endpoint="query_all", methods=["GET"]),
            Rule(f"{API_PATH}/queryAll/<locator>", endpoint="query_all_more", methods=["GET"]),
            Rule(f"{API_PATH}/sobjects/<sobject>", endpoint="create_sobject", methods=["POST"]),
            Rule(f"{API_PATH}/sobjects/<sobject>/describe", endpoint="describe_sobject", methods=["GET"]),
            Rule(
                f"{API_PATH}/sobjects/<sobject>/<record_id>",
                endpoint="sobject_row",
                methods=["GET", "PATCH", "DELETE"],
            ),
            Rule(f"{API_PATH}/composite/sobjects", endpoint="update_collection", methods=["PATCH"]),
            Rule(
                f"{API_PATH}/sobjects/ContentVersion/<record_id>/VersionData", endpoint="version_data", methods=["GET"]
            ),
            Rule(f"{API_PATH}/chatter/feed-elements", endpoint="post_feed_element", methods=["POST"]),
            Rule(f"{API_PATH}/chatter/feed-elements/<element_id>", endpoint="feed_element", methods=["GET"]),
            Rule(f"{API_PATH}/chatter/feeds/record/<record_id>/feed-elements", endpoint="record_feed", methods=["GET"]),
        ]

    # --- state -------------------------------------------------------------------------------------
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
            "salesforce_default": {
                "conn_type": "salesforce",
                "login": user["username"],
                "password": user["password"],
                "extra": {
                    "security_token": user.get("security_token", ""),
                    "login_url": self.base_url,
                    "ca_bundle": ca_bundle,
                    "version": "59.0",
                },
            }
        }

    # --- wire shapes of faults ------------------------------------------------------------------------
    @staticmethod
    def _error(error: SalesforceError) -> Response:
        return json_response(error.body(), error.status)

    def render_server_error(self, status: int) -> Response:
        if status == 503:
            return self._error(SalesforceError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable"))
        error_id = f"{int(clock.now().timestamp() * 1000) % 10**9}-{status} (-1)"
        return self._error(
            SalesforceError(
                status,
                "UNKNOWN_EXCEPTION",
                f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}",
            )
        )

    def render_rate_limited(self, fault: Fault) -> Response:
        return self._error(SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."))

    def render_session_expired(self) -> Response:
        return self._error(SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid"))

    def render_not_found(self, message: str = "The requested resource does not exist") -> Response:
        return self._error(SalesforceError(404, "NOT_FOUND", message))

    def render_bad_request(self, message: str = "Bad request") -> Response:
        return self._error(SalesforceError(400, "MALFORMED_QUERY", message))

    def decorate(self, request: Request, response: Response) -> Response:
        if request.path.startswith("/services/data/"):
            response.headers["Sforce-Limit-Info"] = self.backend.limit_info()
        return response

    # --- login --------------------------------------------------------------------------------------
    def soap_login(self, request: Request, version: str) -> Response:
        try:
            root = ElementTree.fromstring(request.get_data())  # noqa: S314 - local test clients only
        except ElementTree.ParseError:
            return soap_fault("INVALID_SOAP_HEADER", "Unable to parse the request", "UnexpectedErrorFault")
        login = root.find(f".//{{{PARTNER_NS}}}login")
        username = login.findtext(f"{{{PARTNER_NS}}}username") if login is not None else None
        password = login.findtext(f"{{{PARTNER_NS}}}password") if login is not None else None
        credentials = self.backend.check_password(username or "", password or "")
        if credentials is None:
            return soap_fault("INVALID_LOGIN", INVALID_LOGIN)
        user = self.backend.records["User"][credentials.user_id]
        body = LOGIN_RESPONSE.format(
            base=self.base_url,
            version=escape(version),
            org_id=self.backend.org_id,
            session_id=self.sessions.issue(credentials.user_id),
            user_id=credentials.user_id,
            username=escape(credentials.username),
            full_name=escape(user.get("Name") or ""),
        )
        return Response(body, mimetype="text/xml")

    def oauth_token(self, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type")
        if grant == "password":
            app = self.backend.connected_apps.get(form.get("client_id", ""))
            credentials = self.backend.check_password(form.get("username", ""), form.get("password", ""))
            if app is None or app.get("consumer_secret") != form.get("client_secret"):
                return json_response(
                    {"error": "invalid_client_id", "error_description": "client identifier invalid"}, 400
                )
            if credentials is None:
                return json_response({"error": "invalid_grant", "error_description": "authentication failure"}, 400)
            return self._token(credentials.user_id)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_grant(form.get("assertion", ""))
        return json_response({"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400)

    def _jwt_grant(self, assertion: str) -> Response:
        import jwt

        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return json_response({"error": "invalid_grant", "error_description": "invalid assertion"}, 400)
        app = self.backend.connected_apps.get(str(unverified.get("iss", "")))
        if app is None or not app.get("public_key_pem"):
            return json_response({"error": "invalid_client_id", "error_description": "client identifier invalid"}, 400)
        try:
            claims = jwt.decode(
                assertion,
                app["public_key_pem"],
                algorithms=["RS256"],
                audience=self.base_url,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            return json_response({"error": "invalid_grant", "error_description": "expired authorization code"}, 400)
        except jwt.PyJWTError:
            return json_response({"error": "invalid_grant", "error_description": "invalid assertion"}, 400)
        username = str(claims.get("sub", ""))
        credentials = self.backend.credentials.get(username)
        if credentials is None:
            return json_response(
                {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}, 400
            )
        return self._token(credentials.user_id)

    def _token(self, user_id: str) -> Response:
        token = self.sessions.issue(user_id)
        return json_response(
            {
                "access_token": token,
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/{self.backend.org_id}/{user_id}",
                "token_type": "Bearer",
                "issued_at": str(int(clock.now().timestamp() * 1000)),
                "signature": "c2FuZGJveA==",
            }
        )

    # --- REST ---------------------------------------------------------------------------------------
    def _authorise(self, request: Request) -> str:
        """Check the session and count the call; return the user id the session belongs to."""
        header = request.headers.get("Authorization", "")
        token = re.sub(r"^(Bearer|OAuth)\s+", "", header)
        principal = self.sessions.principal(token)
        if principal is None:
            raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        self.backend.count_api_call()
        return principal

    def _actor(self, request: Request) -> str:
        token = re.sub(r"^(Bearer|OAuth)\s+", "", request.headers.get("Authorization", ""))
        return self.sessions.principal(token) or ""

    def _rest(self, request: Request, action: Any) -> Response:
        try:
            self._authorise(request)
            return action()
        except SalesforceError as error:
            return self._error(error)

    def versions(self, request: Request) -> Response:
        return json_response([{"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}])

    def limits(self, request: Request, version: str) -> Response:
        def action() -> Response:
            used = self.backend.api_usage
            limit = self.backend.daily_limit
            return json_response({"DailyApiRequests": {"Max": limit, "Remaining": max(limit - used, 0)}})

        return self._rest(request, action)

    @staticmethod
    def _batch_size(request: Request) -> int | None:
        options = request.headers.get("Sforce-Query-Options", "")
        match = re.search(r"batchSize=(\d+)", options)
        return int(match.group(1)) if match else None

    def _query(self, request: Request, version: str, include_deleted: bool) -> Response:
        soql = request.args.get("q")
        if not soql:
            return self._rest(
                request,
                lambda: self._error(SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")),
            )
        return self._rest(
            request,
            lambda: json_response(self.backend.query(soql, include_deleted, self._batch_size(request), version)),
        )

    def query(self, request: Request, version: str) -> Response:
        return self._query(request, version, include_deleted=False)

    def query_all(self, request: Request, version: str) -> Response:
        return self._query(request, version, include_deleted=True)

    def query_more(self, request: Request, version: str, locator: str) -> Response:
        return self._rest(request, lambda: json_response(self.backend.query_more(locator, False, version)))

    def query_all_more(self, request: Request, version: str, locator: str) -> Response:
        return self._rest(request, lambda: json_response(self.backend.query_more(locator, True, version)))

    def _json_body(self, request: Request) -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError:
            raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None

    def create_sobject(self, request: Request, version: str, sobject: str) -> Response:
        def action() -> Response:
            record_id = self.backend.create(sobject, self._json_body(request) or {}, self._actor(request))
            return json_response({"id": record_id, "success": True, "errors": []}, 201)

        return self._rest(request, action)

    def describe_sobject(self, request: Request, version: str, sobject: str) -> Response:
        return self._rest(request, lambda: json_response(self.backend.describe(sobject)))

    def sobject_row(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        def action() -> Response:
            if request.method == "GET":
                record = self.backend.get(sobject, record_id)
                attributes = {
                    "type": sobject,
                    "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}",
                }
                return json_response({"attributes": attributes, **record})
            if request.method == "PATCH":
                self.backend.update(sobject, record_id, self._json_body(request) or {})
            else:
                self.backend.delete(sobject, record_id)
            return Response(status=204)

        return self._rest(request, action)

    def update_collection(self, request: Request, version: str) -> Response:
        def action() -> Response:
            body = self._json_body(request) or {}
            records = body.get("records") or []
            if len(records) > 200:
                raise SalesforceError(
                    400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records"
                )
            results: list[dict[str, Any]] = []
            for record in records:
                sobject = (record.get("attributes") or {}).get("type", "")
                record_id = record.get("id") or record.get("Id") or ""
                fields = {key: value for key, value in record.items() if key not in ("attributes", "id", "Id")}
                try:
                    self.backend.update(sobject, record_id, fields)
                    results.append({"id": record_id, "success": True, "errors": []})
                except SalesforceError as error:
                    if body.get("allOrNone"):
                        raise
                    failure = {
                        "statusCode": error.code,
                        "message": error.message,
                        "fields": error.fields or [],
                    }
                    results.append({"id": record_id, "success": False, "errors": [failure]})
            return json_response(results)

        return self._rest(request, action)

    # --- Salesforce Files and Chatter (issue #22) ----------------------------------------------------
    def version_data(self, request: Request, version: str, record_id: str) -> Response:
        def action() -> Response:
            return Response(self.backend.version_data(record_id), mimetype="application/octetstream")

        return self._rest(request, action)

    def post_feed_element(self, request: Request, version: str) -> Response:
        def action() -> Response:
            body = self._json_body(request)
            if body is None:  # the request-parameter form: text only
                body = {
                    "feedElementType": request.args.get("feedElementType"),
                    "subjectId": request.args.get("subjectId"),
                    "body": {"messageSegments": [{"type": "Text", "text": request.args.get("text", "")}]},
                }
            if not isinstance(body, dict):
                raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body is not a Feed Item Input")
            return json_response(self.backend.post_feed_element(body, self._actor(request), version), 201)

        return self._rest(request, action)

    def feed_element(self, request: Request, version: str, element_id: str) -> Response:
        return self._rest(request, lambda: json_response(self.backend.feed_element(element_id, version)))

    def record_feed(self, request: Request, version: str, record_id: str) -> Response:
        def action() -> Response:
            size = request.args.get("pageSize", "25")
            if not size.isdigit():
                raise SalesforceError(400, "INVALID_API_INPUT", "pageSize must be a number")
            return json_response(self.backend.record_feed(record_id, request.args.get("page"), int(size), version))

        return self._rest(request, action)
