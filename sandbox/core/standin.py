"""Base class of every HTTP stand-in: routing, call counting, fault injection, error rendering.

A stand-in subclass supplies its routes (``rules()``), its backend state (``load_seed``, ``state``)
and how its system renders each fault (``render_*``). Handlers are methods named after the route
endpoint; they take the Werkzeug request and the URL arguments and return a ``Response``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.core.faults import Fault, FaultConfig, FaultInjector
from sandbox.core.sessions import SessionRegistry

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


class StandIn:
    """One emulated system, served as a WSGI app."""

    #: short name used in seeds, the admin API and connection names (``salesforce``...)
    name: ClassVar[str] = ""
    #: whether the real system is only reachable over HTTPS
    https: ClassVar[bool] = False
    #: the Retry-After (seconds) the real system sends with a rate-limit error
    default_retry_after: ClassVar[float] = 1.0
    #: extra Werkzeug URL converters the routes use
    converters: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.faults = FaultInjector()
        self.sessions = SessionRegistry()
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self.url_map = Map(self.rules(), strict_slashes=False, converters=self.converters)
        self.base_url = ""  # set by the server once the port is known
        self.seed: dict[str, Any] = {}

    # --- to implement -------------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        raise NotImplementedError

    def load_seed(self, seed: dict[str, Any]) -> None:
        """Replace all state with the seed's section for this system."""
        self.seed = seed

    def state(self) -> dict[str, Any]:
        """Everything the stand-in holds, for the admin API and tests."""
        return {}

    def render_server_error(self, status: int) -> Response:
        return json_response({"message": "Internal Server Error"}, status)

    def render_rate_limited(self, fault: Fault) -> Response:
        return json_response({"message": "Too Many Requests"}, 429, {"Retry-After": str(fault.retry_after)})

    def render_session_expired(self) -> Response:
        return json_response({"message": "Session expired"}, 401)

    def render_not_found(self, message: str = "Not Found") -> Response:
        return json_response({"message": message}, 404)

    def render_bad_request(self, message: str = "Bad Request") -> Response:
        return json_response({"message": message}, 400)

    def operation_name(self, request: Request, endpoint: str) -> str:
        """The name calls are counted and faults scripted under (the route endpoint by default)."""
        return endpoint

    def decorate(self, request: Request, response: Response) -> Response:
        """Add headers the real system puts on every response (rate-limit or usage headers)."""
        return response

    # --- framework ----------------------------------------------------------------------------
    def render_fault(self, fault: Fault) -> Response:
        if fault.kind == "rate_limited":
            return self.render_rate_limited(fault)
        if fault.kind == "session_expired":
            return self.render_session_expired()
        if fault.kind == "not_found":
            return self.render_not_found()
        if fault.kind == "bad_request":
            return self.render_bad_request()
        return self.render_server_error(fault.status or 500)

    def configure_faults(self, config: FaultConfig) -> None:
        self.faults.configure(config)
        self.sessions.ttl_seconds = config.session_ttl_seconds

    def reset(self) -> None:
        """Back to the loaded seed with no faults, sessions or call counts."""
        self.faults.reset()
        self.sessions.expire_all()
        self.sessions.ttl_seconds = None
        with self._calls_lock:
            self.calls.clear()
        self.load_seed(self.seed)

    def call_counts(self) -> dict[str, int]:
        with self._calls_lock:
            return dict(self.calls)

    def clear_call_counts(self) -> None:
        with self._calls_lock:
            self.calls.clear()

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, arguments = adapter.match()
        except NotFound:
            return self.render_not_found()
        except MethodNotAllowed as error:
            return json_response({"message": "405 Method Not Allowed"}, error.code or 405)
        except HTTPException as error:  # redirects for trailing slashes and the like
            return error.get_response(request.environ)
        operation = self.operation_name(request, str(endpoint))
        with self._calls_lock:
            self.calls[operation] += 1
        fault = self.faults.before_call(operation, self.default_retry_after)
        if fault is not None and fault.kind == "slow_response":
            response = self._handle_route(request, str(endpoint), arguments, operation)
            self.faults.hold(fault.delay_ms)
            return response
        if fault is not None and fault.kind == "answer_lost":
            self._handle_route(request, str(endpoint), arguments, operation)
            return self.render_fault(Fault("server_error", status=fault.status or 502))
        if fault is not None:
            log.debug("%s: injected %s on %s", self.name, fault.kind, operation)
            return self.render_fault(fault)
        return self._handle_route(request, str(endpoint), arguments, operation)

    def _handle_route(self, request: Request, endpoint: str, arguments: Mapping[str, Any], operation: str) -> Response:
        try:
            response: Response = getattr(self, endpoint)(request, **arguments)
            return response
        except HTTPException as error:
            return json_response({"message": error.description}, error.code or 500)
        except Exception:
            log.exception("%s: handler %s crashed", self.name, operation)
            return self.render_server_error(500)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.decorate(request, self.dispatch(request))
        return response(environ, start_response)
