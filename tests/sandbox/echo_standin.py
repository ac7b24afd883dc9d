"""A minimal stand-in used to test the sandbox framework itself (not a real system)."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.core.standin import StandIn, json_response


class EchoStandIn(StandIn):
    name = "echo"
    https = True

    def rules(self) -> list[Rule]:
        return [
            Rule("/login", endpoint="login", methods=["POST"]),
            Rule("/items", endpoint="list_items", methods=["GET"]),
        ]

    def load_seed(self, seed: dict[str, Any]) -> None:
        super().load_seed(seed)
        self.items = list(seed.get("items", []))

    def state(self) -> dict[str, Any]:
        return {"items": self.items}

    def decorate(self, request: Request, response: Response) -> Response:
        info = self.faults.rate_limit_info()
        if info is not None:
            response.headers["RateLimit-Limit"] = str(info.limit)
            response.headers["RateLimit-Remaining"] = str(info.remaining)
        return response

    def login(self, request: Request) -> Response:
        body = request.get_json()
        if body != {"user": "demo", "password": "demo-password"}:
            return json_response({"message": "bad credentials"}, 401)
        return json_response({"token": self.sessions.issue("demo")})

    def list_items(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.sessions.principal(token) is None:
            return self.render_session_expired()
        return json_response(self.items)
