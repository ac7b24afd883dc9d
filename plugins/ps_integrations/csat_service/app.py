"""The CSAT response service (issue #9): a small FastAPI app customers reach from survey mails.

Runs as its own process (``python -m ps_integrations.csat_service``), not inside Airflow, and
touches only the ``csat_*`` tables. Rules that keep it safe to expose:

- no GET changes anything (mail scanners follow links): rating links show a form, the score is
  recorded on POST; the unsubscribe link shows a confirm button; RFC 8058 one-click POST unsubscribes;
- tokens are signed, bound to one survey and purpose, and expire; bad tokens get a plain page;
- forms carry a CSRF token tied to a cookie (double submit, HMAC-signed);
- requests are rate limited per token and per client address; errors never show a stack trace;
- comments are stored as text and escaped when shown (Jinja autoescape).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from ps_integrations import clock
from ps_integrations.domain.csat import SCORES, TokenError, parse_score, read_token
from ps_integrations.paths import INCLUDE_DIR

log = logging.getLogger(__name__)

CSRF_COOKIE = "csat_csrf"
MAX_COMMENT = 4000
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ServiceSettings:
    secret: str
    token_max_age: timedelta = timedelta(days=60)
    per_token_per_minute: int = 10
    per_client_per_minute: int = 60
    secure_cookies: bool = True


class SlidingWindowLimiter:
    """At most ``limit`` hits per key in the last ``window`` seconds (in memory, per process)."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle keys so memory stays bounded
                for stale in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                    del self._hits[stale]
            return True


def create_app(store: Any, settings: ServiceSettings) -> FastAPI:
    """The FastAPI application over a :class:`~ps_integrations.state_store.StateStore`."""
    templates = Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_csat_surveys")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    by_token = SlidingWindowLimiter(settings.per_token_per_minute)
    by_client = SlidingWindowLimiter(settings.per_client_per_minute)
    app = FastAPI(title="PS CSAT responses", docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, status: int = 200, cookie: str | None = None, **context: Any) -> Response:
        html = templates.get_template(f"pages/{template}.html.j2").render(**context)
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if cookie is not None:
            response.set_cookie(
                CSRF_COOKIE, cookie, httponly=True, samesite="strict", secure=settings.secure_cookies, path="/"
            )
        return response

    def message(title: str, text: str, status: int) -> Response:
        return page("message", status, title=title, message=text)

    def csrf_for(cookie: str, token: str) -> str:
        return hmac.new(settings.secret.encode(), f"{cookie}:{token}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(request: Request, token: str, submitted: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(csrf_for(cookie, token), submitted or "")

    def limited(request: Request, token: str) -> Response | None:
        client = request.client.host if request.client else "unknown"
        if not by_client.allow(client) or not by_token.allow(token[:200]):
            return message("Too many requests", "Too many requests. Please wait a minute and try again.", 429)
        return None

    def survey_of(token: str, purpose: str) -> dict[str, Any] | None:
        try:
            survey_id = read_token(settings.secret, token, settings.token_max_age, purpose)
        except TokenError:
            return None
        return store.fetch_one("csat/service_survey", {"survey_id": survey_id})

    invalid = ("Link not valid", "This survey link is not valid or has expired. Nothing was changed.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            return message("Not found", "There is nothing here.", 404)
        return message("Request not accepted", "This request could not be handled.", error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, _error: RequestValidationError) -> Response:
        return message("Request not accepted", "The form was incomplete. Nothing was changed.", 400)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> Response:
        log.error("CSAT service error: %s", type(error).__name__)  # no details: they may hold customer data
        return message("Something went wrong", "Something went wrong on our side. Please try again later.", 500)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/r/{token}")
    def rating_form(request: Request, token: str, score: str | None = None) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        survey = survey_of(token, "respond")
        if survey is None:
            return message(*invalid, status=404)
        try:
            chosen = parse_score(score) if score is not None else survey.get("score")
        except ValueError:
            chosen = None
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        return page(
            "respond",
            cookie=cookie,
            title="Rate our Professional Services",
            engagement=survey["engagement_title"],
            scores=SCORES,
            chosen=chosen,
            comment=survey.get("comment") or "",
            answered=survey.get("score") is not None,
            action=f"/r/{token}",
            csrf_token=csrf_for(cookie, token),
        )

    @app.post("/r/{token}")
    def rate(
        request: Request,
        token: str,
        score: str = Form(""),
        comment: str = Form(""),
        csrf_token: str = Form(""),
    ) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        survey = survey_of(token, "respond")
        if survey is None:
            return message(*invalid, status=404)
        if not csrf_ok(request, token, csrf_token):
            return message("Form expired", "This form has expired. Please open the link from the e-mail again.", 403)
        try:
            value = parse_score(score)
        except ValueError as error:
            return message("Rating not accepted", f"{error}. Nothing was changed.", 400)
        text = comment.replace("\r\n", "\n").strip()[:MAX_COMMENT]
        now = clock.now_iso()
        store.execute(
            "csat/service_respond", {"survey_id": survey["survey_id"], "score": value, "comment": text, "now": now}
        )
        log.info("CSAT response recorded for survey %s", survey["survey_id"])
        return page("thanks", title="Thank you", score=value, engagement=survey["engagement_title"], comment=text)

    @app.get("/u/{token}")
    def unsubscribe_form(request: Request, token: str) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        if survey_of(token, "unsubscribe") is None:
            return message(*invalid, status=404)
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        return page(
            "unsubscribe",
            cookie=cookie,
            title="Unsubscribe",
            action=f"/u/{token}",
            csrf_token=csrf_for(cookie, token),
        )

    @app.post("/u/{token}")
    async def unsubscribe(request: Request, token: str) -> Response:
        if (refused := limited(request, token)) is not None:
            return refused
        survey = survey_of(token, "unsubscribe")
        if survey is None:
            return message(*invalid, status=404)
        form = await request.form()
        one_click = form.get("List-Unsubscribe") == "One-Click"  # RFC 8058: the mail client's POST
        if not one_click and not csrf_ok(request, token, str(form.get("csrf_token") or "")):
            return message("Form expired", "This form has expired. Please open the link from the e-mail again.", 403)
        store.execute(
            "csat/service_opt_out",
            {
                "survey_id": survey["survey_id"],
                "now": clock.now_iso(),
                "source": "one-click" if one_click else "confirm-page",
            },
        )
        log.info("CSAT opt-out recorded for survey %s", survey["survey_id"])
        return message("Unsubscribed", "You will not receive satisfaction surveys from us any more.", 200)

    return app
