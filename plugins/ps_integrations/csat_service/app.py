"""The CSAT response service (issue #9): a small FastAPI app customers reach from survey mails.

Runs as its own process (``python -m ps_integrations.csat_service``), not inside Airflow, and
touches only the ``csat_*`` tables. Rules that keep it safe to expose:

- no GET changes anything (mail scanners follow links): rating links show a form, the score is
  recorded on POST; the unsubscribe link shows a confirm button; RFC 8058 one-click POST unsubscribes;
- tokens are signed, bound to one survey and purpose, and expire; bad tokens get a plain page;
- forms carry a CSRF token tied to a cookie (double submit, HMAC-signed);
- rate limits (``limiter.py``) keep page views, refused POSTs and accepted answers apart, so mail
  scanners prefetching links cannot use up a customer's answer; errors never show a stack trace;
- comments are stored as text and escaped when shown (Jinja autoescape).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from ps_integrations import clock
from ps_integrations.csat_service.limiter import LimitSettings, RequestLimits
from ps_integrations.domain.csat import SCORES, TokenError, parse_score, read_token
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.state_store import StateStore
from ps_integrations.stores.csat import SurveyAnswer, SurveyAnswers

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
    secret: str = field(repr=False)
    # secrets links were signed with before a rotation: still accepted, never used to sign
    earlier_secrets: tuple[str, ...] = field(default=(), repr=False)
    limits: LimitSettings = field(default_factory=LimitSettings)
    secure_cookies: bool = True


def create_app(store: StateStore, settings: ServiceSettings) -> FastAPI:
    """The FastAPI application over a :class:`~ps_integrations.state_store.StateStore`."""
    templates = Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_csat_surveys")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    limits = RequestLimits(settings.limits)
    answers = SurveyAnswers(store)
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

    def csrf_for(cookie: str, token: str, version: str) -> str:
        """Bound to the browser's cookie, the link and the answer's version: a form made before the
        current answer no longer matches, so a replayed old form cannot set an old answer back."""
        payload = f"{cookie}:{token}:{version}".encode()
        return hmac.new(settings.secret.encode(), payload, hashlib.sha256).hexdigest()

    def csrf_ok(request: Request, token: str, submitted: str, version: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(csrf_for(cookie, token, version), submitted or "")

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def too_many() -> Response:
        return message("Too many requests", "Too many requests. Please wait a minute and try again.", 429)

    def viewed(request: Request) -> Response | None:
        return None if limits.view(client_of(request)) else too_many()

    def refused(request: Request, response: Response) -> Response:
        """A refused POST: counts against its client; 429 once that client keeps being refused."""
        return response if limits.failure(client_of(request)) else too_many()

    def survey_of(token: str, purpose: str) -> SurveyAnswer | None:
        try:
            survey_id = read_token([*settings.earlier_secrets, settings.secret], token, clock.now(), purpose)
        except TokenError:
            return None
        return answers.survey(survey_id)

    invalid = ("Link not valid", "This survey link is not valid or has expired. Nothing was changed.")
    expired_form = ("Form expired", "This form has expired. Please open the link from the e-mail again.")

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
        if (too_busy := viewed(request)) is not None:
            return too_busy
        survey = survey_of(token, "respond")
        if survey is None:
            return message(*invalid, status=404)
        try:
            chosen = parse_score(score) if score is not None else survey.score
        except ValueError:
            chosen = None
        return rating_page(request, token, survey, chosen)

    def rating_page(
        request: Request, token: str, survey: SurveyAnswer, chosen: int | None, stale: bool = False
    ) -> Response:
        """The form, made from the current answer: its version goes into the form and its CSRF token."""
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        version = str(survey.version)
        return page(
            "respond",
            status=409 if stale else 200,
            cookie=cookie,
            title=f"{survey.team}: how did we do?",
            team=survey.team,
            engagement=survey.engagement,
            scores=SCORES,
            chosen=chosen,
            comment=survey.comment,
            answered=survey.score is not None,
            current_score=survey.score,
            stale=stale,
            action=f"/r/{token}",
            version=version,
            csrf_token=csrf_for(cookie, token, version),
        )

    @app.post("/r/{token}")
    def rate(
        request: Request,
        token: str,
        score: str = Form(""),
        comment: str = Form(""),
        csrf_token: str = Form(""),
        version: str = Form("0"),
    ) -> Response:
        survey = survey_of(token, "respond")
        if survey is None:
            return refused(request, message(*invalid, status=404))
        if not version.isdigit() or not csrf_ok(request, token, csrf_token, version):
            return refused(request, message(*expired_form, status=403))
        try:
            value = parse_score(score)
        except ValueError as error:
            return refused(request, message("Rating not accepted", f"{error}. Nothing was changed.", 400))
        if not limits.answer(survey.survey_id):
            return too_many()
        text = comment.replace("\r\n", "\n").strip()[:MAX_COMMENT]
        if not answers.record(survey.survey_id, int(version), value, text):
            # the form was made before the current answer: show that answer, change nothing
            current = answers.survey(survey.survey_id) or survey
            log.info("CSAT stale form for survey %s: nothing changed", survey.survey_id)
            return rating_page(request, token, current, current.score, stale=True)
        log.info("CSAT response recorded for survey %s", survey.survey_id)
        return page(
            "thanks",
            title="Thank you",
            team=survey.team,
            score=value,
            engagement=survey.engagement,
            comment=text,
            change_url=f"/r/{token}",
        )

    @app.get("/u/{token}")
    def unsubscribe_form(request: Request, token: str) -> Response:
        if (too_busy := viewed(request)) is not None:
            return too_busy
        survey = survey_of(token, "unsubscribe")
        if survey is None:
            return message(*invalid, status=404)
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        return page(
            "unsubscribe",
            cookie=cookie,
            title="Unsubscribe",
            team=survey.team,
            action=f"/u/{token}",
            csrf_token=csrf_for(cookie, token, "unsubscribe"),
        )

    @app.post("/u/{token}")
    async def unsubscribe(request: Request, token: str) -> Response:
        survey = survey_of(token, "unsubscribe")
        if survey is None:
            return refused(request, message(*invalid, status=404))
        form = await request.form()
        one_click = form.get("List-Unsubscribe") == "One-Click"  # RFC 8058: the mail client's POST
        if not one_click and not csrf_ok(request, token, str(form.get("csrf_token") or ""), "unsubscribe"):
            return refused(request, message(*expired_form, status=403))
        if not limits.answer(survey.survey_id):
            return too_many()
        answers.opt_out(survey.survey_id, "one-click" if one_click else "confirm-page")
        log.info("CSAT opt-out recorded for survey %s", survey.survey_id)
        return message("Unsubscribed", f"You will not receive satisfaction surveys from {survey.team} any more.", 200)

    return app
