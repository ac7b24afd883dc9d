"""CSAT survey rules (issues #9, #10): who gets a survey, when a reminder is due, signed survey
tokens, e-mail masking and the CSAT arithmetic. Pure: no I/O; the clock is a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ps_integrations.domain.gitlab_text import inline_markdown

SATISFIED_SCORES = (4, 5)
SCORES = (1, 2, 3, 4, 5)
TOKEN_SALT = "ps-csat-survey"  # noqa: S105 - a namespace for signatures, not a secret
UNSUBSCRIBE = "unsubscribe"
LEGACY_TOKEN_DAYS = 60  # the lifetime of links in mails sent before tokens carried their expiry


# --- recipients ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContactRole:
    contact_id: str
    name: str
    email: str
    role: str
    is_primary: bool
    opted_out: bool  # Salesforce Contact.HasOptedOutOfEmail


@dataclass(frozen=True)
class Decision:
    contact: ContactRole
    send: bool
    reason: str  # why not, when not


def normalise_email(address: str) -> str:
    return address.strip().lower()


def allowed_by_list(address: str, allow_list: Sequence[str]) -> bool:
    """Allowed when the list names the address, or its domain or a parent domain (``example.com``
    allows ``a@example.com`` and ``a@acme.example.com``; ``@example.com`` the domain only)."""
    address = normalise_email(address)
    domain = address.rsplit("@", 1)[-1]
    for item in allow_list:
        entry = normalise_email(item)
        if "@" in entry.lstrip("@"):
            if entry == address:
                return True
        elif entry.startswith("@"):
            if entry[1:] == domain:
                return True
        elif domain == entry or domain.endswith("." + entry):
            return True
    return False


def choose_recipients(
    contacts: Iterable[ContactRole],
    roles: Sequence[str],
    opted_out_here: set[str],
    surveyed_since: set[str],
    already_for_engagement: set[str],
    allow_list: Sequence[str] | None,
) -> list[Decision]:
    """One decision per distinct contact of the opportunity, in a stable order.

    Recipients: the primary contact and contacts in ``roles``. Skipped: no e-mail, opted out in
    Salesforce or here, surveyed within the throttle window (``surveyed_since``: e-mails), already
    surveyed for this engagement (contact ids), or outside the allow-list when there is one.
    """
    decisions: list[Decision] = []
    seen: set[str] = set()
    for contact in sorted(contacts, key=lambda c: (not c.is_primary, c.contact_id)):
        if contact.contact_id in seen:
            continue
        seen.add(contact.contact_id)
        email = normalise_email(contact.email or "")
        if not (contact.is_primary or contact.role in roles):
            continue
        if not email or "@" not in email:
            decisions.append(Decision(contact, False, "no e-mail address"))
        elif contact.contact_id in already_for_engagement:
            decisions.append(Decision(contact, False, ALREADY_SURVEYED))
        elif contact.opted_out:
            decisions.append(Decision(contact, False, "opted out of e-mail in Salesforce"))
        elif email in opted_out_here:
            decisions.append(Decision(contact, False, "unsubscribed from CSAT surveys"))
        elif email in surveyed_since:
            decisions.append(Decision(contact, False, "surveyed within the throttle window"))
        elif allow_list is not None and not allowed_by_list(email, allow_list):
            decisions.append(Decision(contact, False, "not on the recipient allow-list (non-production)"))
        else:
            decisions.append(Decision(contact, True, ""))
    return decisions


ALREADY_SURVEYED = "already surveyed for this engagement"
# Why a contact was not surveyed, in the run summary's words (skipped counts per reason)
THROTTLED, OPTED_OUT, NO_CONTACT, ALLOW_LIST = "throttled", "opted out", "no contact", "allow-list"
SKIP_CATEGORIES = {
    "no e-mail address": NO_CONTACT,
    "opted out of e-mail in Salesforce": OPTED_OUT,
    "unsubscribed from CSAT surveys": OPTED_OUT,
    "surveyed within the throttle window": THROTTLED,
    "not on the recipient allow-list (non-production)": ALLOW_LIST,
}


def skip_category(reason: str) -> str:
    return SKIP_CATEGORIES.get(reason, reason)


ENGAGEMENT_NAME_LIMIT = 120  # it is the mail's subject


def engagement_name(configured: str, account: str, offering: str, engagement_type: str) -> str:
    """The name a customer knows the engagement by: the configured field when filled, else
    ``<account> - <offering>`` (the deal's main product, else the engagement type)."""
    if configured.strip():
        name = " ".join(configured.split())
    else:
        account = " ".join(account.split())
        offering = " ".join((offering or engagement_type or "Professional Services").split())
        name = f"{account} - {offering}" if account else offering
    return name if len(name) <= ENGAGEMENT_NAME_LIMIT else name[: ENGAGEMENT_NAME_LIMIT - 1].rstrip() + "…"


_TITLE_SIGIL = re.compile(r"(?<![A-Za-z0-9])[@#!~%&$]+")


def inert_title_text(text: str, limit: int = 120) -> str:
    """Text for a GitLab issue title that mentions and references nothing: a sigil that would start
    a mention or reference (``@all``, ``#1``, ``~label``...) is dropped, no invisible characters."""
    value = " ".join(_TITLE_SIGIL.sub("", text or "").split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def followup_title(account: str, engagement: str, score: int) -> str:
    return f"CSAT follow-up: {inert_title_text(account)} rated {inert_title_text(engagement)} {score}/5"


# --- follow-up issues --------------------------------------------------------------------------------
FOLLOWUP_MARKER = "<!-- ps-integrations:csat-survey={} -->"
_FOLLOWUP_MARKER = re.compile(r"<!-- ps-integrations:csat-survey=([0-9a-f]+) -->")


def followup_survey_id(description: str) -> str | None:
    """The survey a follow-up issue was raised for (its marker), None for any other issue."""
    match = _FOLLOWUP_MARKER.search(description or "")
    return match.group(1) if match else None


def followup_description(
    survey_id: str, score: int, account: str, engagement_url: str, closed_at: str, responded_at: str, comment: str
) -> str:
    """The follow-up issue's body: the answer, the customer's comment quoted inert, and the marker."""
    quoted = inline_markdown(comment) if comment else "_no comment_"
    return "\n".join(
        [
            f"A customer rated the engagement **{score} of 5**.",
            "",
            f"- Customer: {inline_markdown(account)}",
            f"- Engagement: {engagement_url}",
            f"- Closed: {closed_at}",
            f"- Answered: {responded_at}",
            "",
            "Comment:",
            "",
            f"> {quoted}".replace("\n", "\n> "),
            "",
            "Please reach out to the customer and record what was agreed here.",
            "",
            FOLLOWUP_MARKER.format(survey_id),
        ]
    )


def reminder_due(sent_at: datetime, as_of: datetime, reminder_after: timedelta) -> bool:
    return sent_at + reminder_after <= as_of


def mask_email(address: str) -> str:
    """``jane.doe@acme.com`` -> ``j***@a***.com``: enough to tell mails apart in logs, not to read them."""
    address = address.strip()
    if "@" not in address:
        return "***"
    local, domain = address.rsplit("@", 1)
    host, _, suffix = domain.partition(".")
    return f"{local[:1]}***@{host[:1]}***{'.' + suffix.rsplit('.', 1)[-1] if suffix else ''}"


# --- tokens ----------------------------------------------------------------------------------------------
class TokenError(ValueError):
    """A survey token that is forged, tampered with, expired or malformed."""


def make_token(secret: str, survey_id: str, purpose: str = "respond", expires: datetime | None = None) -> str:
    """A URL-safe token bound to one survey and purpose, signed with ``secret`` (itsdangerous).

    ``expires``: the moment the link stops working, carried inside the signed token so the survey
    job's ``token_days`` is the one link-lifetime setting. Unsubscribe tokens carry none: they work
    as long as the mail exists (RFC 8058).
    """
    from itsdangerous import URLSafeTimedSerializer

    payload: dict[str, Any] = {"s": survey_id, "p": purpose}
    if expires is not None:
        payload["x"] = int(expires.timestamp())
    return str(URLSafeTimedSerializer(secret, salt=TOKEN_SALT).dumps(payload))


def token_expiry(data: Mapping[str, Any], issued: datetime) -> datetime:
    """When a token's link stops working: its own expiry, else (tokens of mails sent before the
    expiry was carried in the token) ``LEGACY_TOKEN_DAYS`` after it was made."""
    expires = data.get("x")
    if isinstance(expires, int) and not isinstance(expires, bool):
        return datetime.fromtimestamp(expires, UTC)
    return issued + timedelta(days=LEGACY_TOKEN_DAYS)


def read_token(secret: str | Sequence[str], token: str, now: datetime, purpose: str = "respond") -> str:
    """The survey id of a valid token; :class:`TokenError` otherwise (never says which check failed).

    Unsubscribe tokens never expire: a one-click unsubscribe that answers "expired" breaks RFC 8058.
    ``secret`` may list earlier secrets too (oldest first, the current one last), so links of mails
    sent before a secret rotation keep working.
    """
    from itsdangerous import BadSignature, URLSafeTimedSerializer

    try:
        keys = [secret] if isinstance(secret, str) else list(secret)
        data, issued = URLSafeTimedSerializer(keys, salt=TOKEN_SALT).loads(token, return_timestamp=True)
    except BadSignature as error:
        raise TokenError("invalid or expired survey link") from error
    if not isinstance(data, dict) or data.get("p") != purpose or not isinstance(data.get("s"), str):
        raise TokenError("invalid or expired survey link")
    if purpose != UNSUBSCRIBE and now >= token_expiry(data, issued):
        raise TokenError("invalid or expired survey link")
    return data["s"]


def parse_score(value: object) -> int:
    try:
        score = int(str(value).strip())
    except ValueError as error:
        raise ValueError("the score must be a whole number from 1 to 5") from error
    if score not in SCORES:
        raise ValueError("the score must be a whole number from 1 to 5")
    return score


# --- CSAT arithmetic (issue #10) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CsatFigures:
    surveys: int
    responses: int
    satisfied: int
    score_counts: Mapping[int, int]

    @property
    def csat_pct(self) -> float | None:
        return round(self.satisfied / self.responses * 100, 1) if self.responses else None

    @property
    def response_rate_pct(self) -> float | None:
        return round(self.responses / self.surveys * 100, 1) if self.surveys else None


def csat_figures(surveys: int, scores: Iterable[int]) -> CsatFigures:
    """CSAT % = responses scoring 4 or 5 / all responses; response rate = responses / surveys sent."""
    counts = dict.fromkeys(SCORES, 0)
    for score in scores:
        counts[score] += 1
    responses = sum(counts.values())
    satisfied = sum(counts[score] for score in SATISFIED_SCORES)
    return CsatFigures(surveys, responses, satisfied, counts)


# --- summaries (issue #10) -----------------------------------------------------------------------------
LOW_RESPONSE_COUNT = 5  # fewer responses than this: the percentage is shown, marked as based on few answers


@dataclass(frozen=True)
class SurveyOutcome:
    """One survey that was sent, and its answer if there is one (no e-mail address)."""

    survey_id: str
    closed_on: date
    engagement_title: str
    engagement_url: str
    engagement_type: str
    sku_category: str
    project_manager: str
    account: str
    score: int | None = None
    comment: str = ""
    responded_at: str = ""
    engagement_name: str = ""  # as the customer knows it
    followup_url: str = ""  # the GitLab follow-up issue of a low score


def fiscal_quarter_key(day: date, start_month: int = 2) -> str:
    """``FY2027-Q3``: the fiscal year is named by the calendar year it ends in (as the opportunity sync)."""
    offset = (day.month - start_month) % 12
    year = day.year + (1 if start_month > 1 and day.month >= start_month else 0)
    return f"FY{year}-Q{offset // 3 + 1}"


def fiscal_quarter_bounds(key: str, start_month: int = 2) -> tuple[date, date]:
    """The first and last day of the fiscal quarter ``key`` (``FY2027-Q4`` with February starts:
    2026-11-01 to 2027-01-31)."""
    year, quarter = int(key[2:6]), int(key[-1])
    first_year = year - (1 if start_month > 1 else 0)
    month_index = start_month - 1 + (quarter - 1) * 3  # months since January of first_year
    first = date(first_year + month_index // 12, month_index % 12 + 1, 1)
    after_index = month_index + 3
    after = date(first_year + after_index // 12, after_index % 12 + 1, 1)
    return first, after - timedelta(days=1)


def previous_quarters(key: str, count: int) -> list[str]:
    """The ``count`` fiscal quarters ending with ``key``, oldest first."""
    year, quarter = int(key[2:6]), int(key[-1])
    keys = []
    for _ in range(count):
        keys.append(f"FY{year}-Q{quarter}")
        quarter -= 1
        if quarter == 0:
            year, quarter = year - 1, 4
    return keys[::-1]


def figures_of(outcomes: Sequence[SurveyOutcome]) -> CsatFigures:
    return csat_figures(len(outcomes), [o.score for o in outcomes if o.score is not None])


def breakdown(outcomes: Sequence[SurveyOutcome], dimension: str) -> list[tuple[str, CsatFigures]]:
    """CSAT figures per value of a dimension (an attribute of :class:`SurveyOutcome`), by value."""
    groups: dict[str, list[SurveyOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(str(getattr(outcome, dimension) or "(none)"), []).append(outcome)
    return [(value, figures_of(groups[value])) for value in sorted(groups)]


# The breakdowns of a quarter: SurveyOutcome attribute and its title in the report
DIMENSIONS = (
    ("engagement_type", "Engagement type"),
    ("sku_category", "SKU category"),
    ("project_manager", "Project manager"),
    ("account", "Account"),
)
TREND_QUARTERS = 8


@dataclass(frozen=True)
class QuarterFigures:
    """Everything one fiscal quarter's CSAT report shows."""

    period: str
    dates: tuple[date, date]
    surveys: tuple[SurveyOutcome, ...]  # closed in the quarter, by close date
    overall: CsatFigures
    trend: tuple[tuple[str, CsatFigures], ...]  # the last 8 quarters, oldest first, this one last
    last_8: CsatFigures
    tables: Mapping[str, list[tuple[str, CsatFigures]]]  # per dimension
    verbatims: tuple[SurveyOutcome, ...]  # answers with a comment, newest first
    low_scores: tuple[SurveyOutcome, ...]  # answers of 1 or 2, newest first


def quarter_figures(outcomes: Sequence[SurveyOutcome], period: str, start_month: int) -> QuarterFigures:
    """The CSAT figures of fiscal quarter ``period`` (engagements closed in it) and its 8-quarter trend."""
    quarter_of = {o.survey_id: fiscal_quarter_key(o.closed_on, start_month) for o in outcomes}
    in_period = [o for o in outcomes if quarter_of[o.survey_id] == period]
    trend_keys = previous_quarters(period, TREND_QUARTERS)
    answered = sorted(
        (o for o in in_period if o.score is not None), key=lambda o: (o.responded_at, o.survey_id), reverse=True
    )
    return QuarterFigures(
        period=period,
        dates=fiscal_quarter_bounds(period, start_month),
        surveys=tuple(sorted(in_period, key=lambda o: (o.closed_on, o.survey_id))),
        overall=figures_of(in_period),
        trend=tuple((key, figures_of([o for o in outcomes if quarter_of[o.survey_id] == key])) for key in trend_keys),
        last_8=figures_of([o for o in outcomes if quarter_of[o.survey_id] in set(trend_keys)]),
        tables={name: breakdown(in_period, name) for name, _ in DIMENSIONS},
        verbatims=tuple(o for o in answered if o.comment),
        low_scores=tuple(o for o in answered if o.score is not None and o.score <= 2),
    )
