"""The admin API under ``/_sandbox/``: state, call counts, seeds, fault injection, sent mail.

Only tests, benchmarks and the demo call it; product code never does. Routes:

    GET    /_sandbox/                         index: systems, their URLs, the CA file
    POST   /_sandbox/reset                    reload the current seed everywhere, clear faults/calls
    POST   /_sandbox/seed                     load a new seed (JSON body, same format as seed files)
    GET    /_sandbox/<system>/state           everything the stand-in holds
    GET    /_sandbox/<system>/calls           per-endpoint call counts   (DELETE clears them)
    GET    /_sandbox/<system>/faults          current fault settings and scripted failures
    PUT    /_sandbox/<system>/faults          replace fault settings (FaultConfig fields)
    POST   /_sandbox/<system>/faults/script   {"endpoint", "kind", "count", "status"?, "after"?}
    POST   /_sandbox/<system>/sessions/expire expire every session now
    GET    /_sandbox/smtp/messages            every message the SMTP sink received (DELETE clears)
    PUT    /_sandbox/smtp/reply-delay         {"seconds"}: keep each message, then wait before the 250
    PUT    /_sandbox/smtp/hold                {"after", "seconds"}: hold the 250 of every message after
                                              the first ``after`` (DELETE: stop, release held replies)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.core.faults import FaultConfig
from sandbox.core.standin import json_response

if TYPE_CHECKING:
    from sandbox.core.server import SandboxServer


class AdminApp:
    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url_map = Map(
            [
                Rule("/_sandbox/", endpoint="index", methods=["GET"]),
                Rule("/_sandbox/reset", endpoint="reset", methods=["POST"]),
                Rule("/_sandbox/seed", endpoint="seed", methods=["POST"]),
                Rule("/_sandbox/smtp/messages", endpoint="smtp_messages", methods=["GET", "DELETE"]),
                Rule("/_sandbox/smtp/reply-delay", endpoint="smtp_reply_delay", methods=["PUT"]),
                Rule("/_sandbox/smtp/hold", endpoint="smtp_hold", methods=["PUT", "DELETE"]),
                Rule("/_sandbox/<system>/state", endpoint="state", methods=["GET"]),
                Rule("/_sandbox/<system>/calls", endpoint="calls", methods=["GET", "DELETE"]),
                Rule("/_sandbox/<system>/faults", endpoint="faults", methods=["GET", "PUT"]),
                Rule("/_sandbox/<system>/faults/script", endpoint="script", methods=["POST"]),
                Rule("/_sandbox/<system>/sessions/expire", endpoint="expire", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, arguments = adapter.match()
            response = getattr(self, f"on_{endpoint}")(request, **arguments)
        except KeyError as error:
            response = json_response({"error": f"unknown system {error.args[0]!r}"}, 404)
        except ValueError as error:
            response = json_response({"error": str(error)}, 400)
        except Exception as error:  # the admin API reports, it never hides
            response = getattr(error, "get_response", lambda _env: None)(environ) or json_response(
                {"error": repr(error)}, 500
            )
        return response(environ, start_response)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.data:
            return {}
        data = json.loads(request.data)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    def on_index(self, request: Request) -> Response:
        return json_response(self.server.info())

    def on_reset(self, request: Request) -> Response:
        self.server.reset()
        return json_response({"reset": True})

    def on_seed(self, request: Request) -> Response:
        self.server.load_seed(self._body(request))
        return json_response({"loaded": sorted(self._body(request))})

    def on_state(self, request: Request, system: str) -> Response:
        return json_response(self.server.component(system).state())

    def on_calls(self, request: Request, system: str) -> Response:
        standin = self.server.standin(system)
        if request.method == "DELETE":
            standin.clear_call_counts()
        return json_response(standin.call_counts())

    def on_faults(self, request: Request, system: str) -> Response:
        standin = self.server.standin(system)
        if request.method == "PUT":
            standin.configure_faults(FaultConfig.from_dict(self._body(request)))
        return json_response(standin.faults.describe())

    def on_script(self, request: Request, system: str) -> Response:
        body = self._body(request)
        standin = self.server.standin(system)
        standin.faults.script(
            endpoint=str(body["endpoint"]),
            kind=str(body.get("kind", "server_error")),
            count=int(body.get("count", 1)),
            status=body.get("status"),
            delay_ms=int(body.get("delay_ms", 0)),
            after=int(body.get("after", 0)),
        )
        return json_response(standin.faults.describe())

    def on_expire(self, request: Request, system: str) -> Response:
        return json_response({"expired": self.server.standin(system).sessions.expire_all()})

    def on_smtp_reply_delay(self, request: Request) -> Response:
        seconds = float(self._body(request).get("seconds", 0))
        self.server.smtp.set_reply_delay(seconds)
        return json_response({"reply_delay_seconds": seconds})

    def on_smtp_hold(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.server.smtp.release_holds()
            return json_response({"holding": self.server.smtp.holding})
        body = self._body(request)
        self.server.smtp.hold_reply(int(body.get("after", 0)), float(body.get("seconds", 60)))
        return json_response({"holding": self.server.smtp.holding})

    def on_smtp_messages(self, request: Request) -> Response:
        if request.method == "DELETE":
            return json_response({"deleted": self.server.smtp.store.clear()})
        return json_response(self.server.smtp.store.all())
