"""A PS team's CSAT history (issue #21): engagements closing every week for two years, who was
surveyed, who answered, with which score and comment.

One deterministic model serves two places:

- the seed section ``csat`` (top level, applied after every system's own section): engagements that
  closed in the last ``recent_days`` become closed engagement issues in GitLab (with the opportunity
  sync's marker) and opportunities with contact roles and line items in Salesforce, so
  ``ps_csat_surveys`` surveys them for real;
- :func:`history`: everything that closed before that, as earlier runs of ``ps_csat_surveys`` and the
  response service would have left it in the state database (``scripts/demo.py`` writes it there).

:func:`customer_answer` is how a contact answers (or not): the history uses it, and the demo uses it
to answer the current surveys through the real response service.

Section format (all keys optional)::

    csat:
      end: "2026-12-01T10:00:00+00:00"   # the history's last moment (default: the product clock's now)
      weeks: 104                           # how far back the history goes
      recent_days: 14                      # closed this recently: in GitLab/Salesforce, not yet surveyed
      random_seed: 21

The figures are those of a large PS team: 12-20 engagements close a week, 1-3 customer contacts are
surveyed per engagement (at most once in 90 days each), about 43% answer within 10 days, CSAT is
in the high 80s and improving, Migration engagements and one project manager score a little lower,
and most low scores come with a comment.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from ps_integrations import clock

PS_GROUP = "professional-services"
ENGAGEMENTS_PROJECT = f"{PS_GROUP}/engagements"
ROLES = ("Decision Maker", "Economic Buyer", "Executive Sponsor")
THROTTLE = timedelta(days=90)
# (username, display name, public e-mail, how their engagements tend to score: <0 lower)
PROJECT_MANAGERS = (
    ("sofia.pm", "Sofia Lindqvist", "sofia.lindqvist@ps.example.com", 0.3),
    ("mateo.pm", "Mateo Alvarez", "mateo.alvarez@ps.example.com", 0.1),
    ("aisha.pm", "Aisha Okafor", "aisha.okafor@ps.example.com", 0.2),
    ("henrik.pm", "Henrik Brandt", "henrik.brandt@ps.example.com", -0.6),
)
# engagement type -> (services.yml category of its offering, how it tends to score, share of closes)
ENGAGEMENT_TYPES = {
    "Training": ("Education", 0.5, 30),
    "Implementation": ("Implementation", 0.1, 18),
    "Migration": ("Migration", -0.5, 16),
    "Consulting": ("Consulting", 0.0, 12),
    "Health Check": ("Consulting", 0.3, 10),
    "Integration": ("Integration", -0.1, 8),
    "Embedded Engineer": ("Consulting", 0.0, 6),
}
ACCOUNTS = (
    "Northwind Traders", "Contoso Pharma", "Fabrikam Logistics", "Tailspin Airlines", "Litware Systems",
    "Adventure Works", "Wingtip Toys", "Proseware Labs", "Alpine Ski House", "Coho Vineyard",
    "Lucerne Publishing", "Margie's Travel", "Trey Research", "Woodgrove Bank", "Blue Yonder Freight",
    "Datum Corporation", "Fourth Coffee", "Graphic Design Institute", "Humongous Insurance", "Relecloud",
    "Southridge Video", "VanArsdel Foods", "Wide World Importers", "Bellows College", "Munson's Pickles",
    "Nod Publishers", "School of Fine Art", "Lamna Healthcare", "Tasmanian Traders", "Best For You Organics",
    "Consolidated Messenger", "Cohowinery Group", "Adatum Health", "Fincher Architects", "Hexa Robotics",
    "Kestrel Energy", "Meridian Retail", "Orbital Telecom", "Pinnacle Mutual", "Quantum Freightways",
    "Riverbend Utilities", "Sable Aerospace", "Terra Mining", "Umber Media", "Vector Automotive",
    "Willow Biotech", "Xeno Semiconductors", "Yellowstone Credit Union", "Zephyr Gaming", "Harbor City Council",
)  # fmt: skip
FIRST = ("Alex", "Maria", "Jun", "Priya", "Tom", "Fatima", "Lukas", "Chloe", "Omar", "Ingrid", "Raj", "Elena",
         "Sam", "Yuki", "Noah", "Zara", "Diego", "Hannah", "Kofi", "Mia")  # fmt: skip
LAST = ("Schmidt", "Nakamura", "Patel", "Johansson", "Garcia", "Dubois", "Kowalski", "Okoye", "Rossi", "Chen",
        "Murphy", "Haddad", "Silva", "Novak", "Larsen", "Khan", "Fischer", "Moreau", "Tanaka", "Walsh")  # fmt: skip
COMMENTS = {
    5: (
        "Excellent engagement - {pm} kept everything on track and on budget.",
        "The team knew GitLab inside out; our pipelines now run in half the time.",
        "Great knowledge transfer, our platform team feels confident running it themselves.",
        "Smooth cut-over over the weekend with zero downtime. Thank you!",
        "Hands-on, well paced training. The labs were the highlight.",
        "Best professional services engagement we have had from any vendor this year.",
        "Clear weekly status reports and no surprises.",
    ),
    4: (
        "Good outcome. The first week was slow while access was sorted out.",
        "Solid work; the runbook could have been more detailed.",
        "Helpful engineers. We would like a follow-up session on CI templates.",
        "Met our goals, a little over the planned schedule.",
        "Training content was good, the exercises assumed more Git experience than we had.",
    ),
    3: (
        "OK overall, but we had three different engineers in four weeks.",
        "The migration worked but several repositories needed manual fixes afterwards.",
        "Content was too basic for our senior engineers.",
        "Reasonable, though the scope discussion at the start took too long.",
    ),
    2: (
        "Handover notes were thin and we struggled after the engagement ended.",
        "The schedule slipped twice without warning.",
        "Runner autoscaling is still not working as agreed in the SOW.",
    ),
    1: (
        "We did not get what the SOW promised; we are escalating internally.",
        "The engineer did not know our environment and it showed. Please call me.",
    ),
}
COMMENT_RATE = {5: 0.3, 4: 0.4, 3: 0.7, 2: 0.85, 1: 0.9}


@dataclass(frozen=True)
class Contact:
    first: str
    last: str
    email: str
    role: str
    is_primary: bool

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Engagement:
    number: int
    account: str
    engagement_type: str
    category: str
    offering: str
    project_manager: str
    closed_at: datetime
    contacts: tuple[Contact, ...]

    @property
    def title(self) -> str:  # the internal GitLab title, as PS names its issues
        return f"{self.account}: {self.engagement_type} ({self.closed_at:%Y-%m})"


@dataclass(frozen=True)
class Answer:
    score: int
    comment: str
    responded_at: datetime


@dataclass(frozen=True)
class PastSurvey:
    engagement: Engagement
    contact: Contact
    sent_at: datetime
    answer: Answer | None


def _domain(account: str) -> str:
    slug = "".join(char if char.isalnum() else "-" for char in account.lower().replace("'", "")).strip("-")
    return f"{'-'.join(part for part in slug.split('-') if part)}.example.com"


@cache
def _offerings() -> dict[str, tuple[str, ...]]:
    from sandbox.reference import services

    found: dict[str, list[str]] = {}
    for entry in services():
        if entry.get("sku") and entry.get("category"):
            found.setdefault(str(entry["category"]), []).append(str(entry["name"]).strip())
    return {category: tuple(sorted(set(names))) for category, names in found.items()}


def _people(account: str) -> list[tuple[str, str]]:
    rng = random.Random(f"people:{account}")
    return [(rng.choice(FIRST), rng.choice(LAST)) for _ in range(80)]


def engagements(end: datetime, weeks: int = 104, random_seed: int = 21) -> list[Engagement]:
    """Every engagement that closed in the ``weeks`` before ``end``, oldest first."""
    rng = random.Random(random_seed)
    start = end - timedelta(weeks=weeks)
    kinds = list(ENGAGEMENT_TYPES)
    shares = [ENGAGEMENT_TYPES[kind][2] for kind in kinds]
    found: list[Engagement] = []
    week_start = start
    while week_start < end:
        for _ in range(rng.randint(12, 20)):
            closed_at = week_start + timedelta(
                days=rng.choice([0, 1, 2, 3, 4, 4]), hours=rng.randint(8, 18), minutes=rng.randint(0, 59)
            )
            kind = rng.choices(kinds, shares)[0]
            account = rng.choice(ACCOUNTS)
            category = ENGAGEMENT_TYPES[kind][0]
            offering = rng.choice(_offerings().get(category) or ("Professional Services",))
            people = rng.sample(_people(account), rng.choices([1, 2, 3], [35, 45, 20])[0])
            contacts = tuple(
                Contact(
                    first,
                    last,
                    f"{first.lower()}.{last.lower()}@{_domain(account)}",
                    ROLES[index % len(ROLES)],
                    index == 0,
                )
                for index, (first, last) in enumerate(people)
            )
            pm = rng.choice(PROJECT_MANAGERS)[0]
            if closed_at < end:
                found.append(Engagement(len(found) + 1, account, kind, category, offering, pm, closed_at, contacts))
        week_start += timedelta(weeks=1)
    return sorted(found, key=lambda engagement: (engagement.closed_at, engagement.number))


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def customer_answer(
    email: str, engagement_type: str, project_manager: str, closed_at: datetime, end: datetime
) -> Answer | None:
    """Whether and how this contact answers the survey of this engagement (deterministic)."""
    key = (email.lower(), closed_at.date().isoformat())
    if _unit("answers", *key) >= 0.43:
        return None
    age_years = max((end - closed_at).days, 0) / 365
    quality = (
        ENGAGEMENT_TYPES.get(engagement_type, ("", 0.0, 0))[1]
        + next((pm[3] for pm in PROJECT_MANAGERS if pm[0] == project_manager), 0.0)
        - 0.4 * age_years  # the team got better over the two years
        + 1.4 * (_unit("quality", *key) - 0.5)
    )
    weights = {5: 55 + 16 * quality, 4: 30.0, 3: 7 - 3 * quality, 2: 3.5 - 2.5 * quality, 1: 1.5 - 1.2 * quality}
    roll = _unit("score", *key) * sum(max(weight, 0.5) for weight in weights.values())
    score = 5
    for candidate, weight in weights.items():
        roll -= max(weight, 0.5)
        if roll < 0:
            score = candidate
            break
    comment = ""
    if _unit("comment", *key) < COMMENT_RATE[score]:
        options = COMMENTS[score]
        pm_name = next((pm[1].split()[0] for pm in PROJECT_MANAGERS if pm[0] == project_manager), "our PM")
        comment = options[int(_unit("which", *key) * len(options))].format(pm=pm_name)
    delay = timedelta(hours=2 + int(_unit("delay", *key) * 9 * 24))
    return Answer(score, comment, closed_at + timedelta(hours=1) + delay)


def history(end: datetime, weeks: int = 104, recent_days: int = 14, random_seed: int = 21) -> list[PastSurvey]:
    """The surveys sent for engagements closed before ``end - recent_days`` and their answers, with
    the survey job's rules applied: one survey per contact at most every 90 days."""
    cutoff = end - timedelta(days=recent_days)
    last_surveyed: dict[str, datetime] = {}
    surveys = []
    for engagement in engagements(end, weeks, random_seed):
        if engagement.closed_at >= cutoff:
            break
        for contact in engagement.contacts:
            previous = last_surveyed.get(contact.email)
            if previous is not None and engagement.closed_at - previous < THROTTLE:
                continue
            last_surveyed[contact.email] = engagement.closed_at
            sent_at = engagement.closed_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            answer = customer_answer(
                contact.email, engagement.engagement_type, engagement.project_manager, engagement.closed_at, end
            )
            surveys.append(PastSurvey(engagement, contact, sent_at, answer))
    return surveys


def settings(section: dict[str, Any]) -> tuple[datetime, int, int, int]:
    end_text = section.get("end")
    end = datetime.fromisoformat(str(end_text)) if end_text else clock.now()
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return end, int(section.get("weeks", 104)), int(section.get("recent_days", 14)), int(section.get("random_seed", 21))


def apply(server: Any, section: dict[str, Any]) -> None:
    """Put the recently closed engagements into GitLab and Salesforce (after their own sections)."""
    end, weeks, recent_days, random_seed = settings(section)
    recent = [e for e in engagements(end, weeks, random_seed) if e.closed_at >= end - timedelta(days=recent_days)]
    gitlab = server.standin("gitlab").backend
    salesforce = server.standin("salesforce").backend
    with gitlab.lock:
        managers = {}
        for username, name, email, _quality in PROJECT_MANAGERS:
            user = gitlab.user_by_username(username) or gitlab.add_user(
                username, name, email, role="project_manager", job_title="Project Manager"
            )
            user.public_email = email
            managers[username] = user
        project = gitlab.project(ENGAGEMENTS_PROJECT)
        author = gitlab.user_by_username("ps-integration-bot") or next(iter(gitlab.users.values()))
        for engagement in recent:
            opportunity_id = _salesforce_records(salesforce, engagement)
            issue = gitlab.create_issue(
                project,
                author,
                {
                    "title": engagement.title,
                    "description": f"Engagement for {engagement.account}.\n\n"
                    f"<!-- ps-integrations:opportunity-id={opportunity_id} -->",
                    "labels": ["ps::done", engagement.engagement_type],
                    "assignee_ids": [managers[engagement.project_manager].id],
                },
                created_at=engagement.closed_at - timedelta(days=30),
            )
            issue.state, issue.closed_at = "closed", engagement.closed_at
            issue.closed_by_id = managers[engagement.project_manager].id
            issue.updated_at = engagement.closed_at


def _salesforce_records(salesforce: Any, engagement: Engagement) -> str:
    """The won deal behind an engagement: account, contacts, contact roles, the main line item."""
    stamp = engagement.closed_at.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    account = next(
        (r for r in salesforce.records["Account"].values() if r.get("Name") == engagement.account), None
    ) or salesforce.insert("Account", {"Name": engagement.account, "CreatedDate": stamp})
    standard = next(
        (r["Id"] for r in salesforce.records["RecordType"].values() if r.get("DeveloperName") == "Standard"), None
    )
    product = next((r for r in salesforce.records["Product2"].values() if r.get("Name") == engagement.offering), None)
    opportunity = salesforce.insert(
        "Opportunity",
        {
            "Name": f"{engagement.account} - {engagement.offering}",
            "AccountId": account["Id"],
            "RecordTypeId": standard,  # PS sold on a standard deal: the opportunity sync leaves it alone
            "StageName": "Closed Won",
            "CloseDate": (engagement.closed_at - timedelta(days=45)).date().isoformat(),
            "CurrencyIsoCode": "USD",
            "Type": "Existing Business",
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        },
    )
    if product is not None:
        salesforce.insert(
            "OpportunityLineItem",
            {"OpportunityId": opportunity["Id"], "Product2Id": product["Id"], "Quantity": 1.0, "UnitPrice": 25000.0},
        )
    for contact in engagement.contacts:
        record = next(
            (r for r in salesforce.records["Contact"].values() if (r.get("Email") or "").lower() == contact.email),
            None,
        ) or salesforce.insert(
            "Contact",
            {
                "FirstName": contact.first,
                "LastName": contact.last,
                "Email": contact.email,
                "AccountId": account["Id"],
                "HasOptedOutOfEmail": False,
            },
        )
        salesforce.insert(
            "OpportunityContactRole",
            {
                "OpportunityId": opportunity["Id"],
                "ContactId": record["Id"],
                "Role": contact.role,
                "IsPrimary": contact.is_primary,
            },
        )
    return str(opportunity["Id"])


def survey_id_of(survey: PastSurvey) -> str:
    key = f"{survey.contact.email}:{survey.engagement.closed_at.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def write_history(store: Any, surveys: list[PastSurvey], gitlab_url: str, company: str = "GitLab") -> int:
    """Record ``surveys`` in the state database as ``ps_csat_surveys`` and the response service would
    have (through their own SQL): sent, reminded when unanswered after 5 days, answered. Low scores
    are left for ``ps_csat_surveys`` to raise their follow-up issues. Returns the surveys written."""
    managers = {username: f"{name} <{email}>" for username, name, email, _quality in PROJECT_MANAGERS}
    store.apply_schema()
    with store.transaction() as connection:
        for survey in surveys:
            engagement, contact, survey_id = survey.engagement, survey.contact, survey_id_of(survey)
            sent = survey.sent_at.isoformat(timespec="seconds")
            store.execute(
                "csat/add_survey",
                {
                    "survey_id": survey_id,
                    # engagements closed before the sandbox's GitLab history: numbered from 10000
                    "engagement_url": f"{gitlab_url}/{ENGAGEMENTS_PROJECT}/-/issues/{10000 + engagement.number}",
                    "engagement_title": engagement.title,
                    "issue_iid": 10000 + engagement.number,
                    "opportunity_id": "",
                    "account": engagement.account,
                    "engagement_type": engagement.engagement_type,
                    "sku_category": engagement.category,
                    "project_manager": engagement.project_manager,
                    "closed_at": engagement.closed_at.isoformat(timespec="seconds"),
                    "contact_id": f"csat-history-{contact.email}",
                    "contact_name": contact.name,
                    "email": contact.email,
                    "window_at": sent,
                    "run_id": "history",
                    "engagement_name": f"{engagement.account} - {engagement.offering}",
                    "company": company,
                    "reply_to": managers.get(engagement.project_manager, ""),
                },
                connection=connection,
            )
            store.execute("csat/claim", {"survey_id": survey_id}, connection=connection)
            store.execute("csat/mark_sent", {"survey_id": survey_id, "sent_at": sent}, connection=connection)
            reminder_due = survey.sent_at + timedelta(days=5)
            if survey.answer is None or survey.answer.responded_at > reminder_due:
                store.execute("csat/claim_reminder", {"survey_id": survey_id}, connection=connection)
                store.execute(
                    "csat/mark_reminder_sent",
                    {"survey_id": survey_id, "sent_at": reminder_due.isoformat(timespec="seconds")},
                    connection=connection,
                )
            if survey.answer is not None:
                store.execute(
                    "csat/service_first_answer",
                    {
                        "survey_id": survey_id,
                        "score": survey.answer.score,
                        "comment": survey.answer.comment,
                        "now": survey.answer.responded_at.isoformat(timespec="seconds"),
                    },
                    connection=connection,
                )
    return len(surveys)


SCANNER_ADDRESS = "203.0.113.25"  # a mail security scanner (TEST-NET-3), prefetching every link


def answer_mails(mails: list[dict[str, Any]], end: datetime, weeks: int = 104, random_seed: int = 21) -> list[int]:
    """Play the customers of the survey mails in ``mails`` (the SMTP sink's copies): a mail scanner
    fetches every link first, then each contact answers as :func:`customer_answer` says, through
    the response service's own pages (open the rating link, send the form). Returns the scores given.

    The response service sits behind a proxy it trusts (as in production): the scanner and each
    customer get their own client address through ``X-Forwarded-For``.
    """
    import re

    import requests

    closed = {
        contact.email: engagement
        for engagement in engagements(end, weeks, random_seed)
        if engagement.closed_at >= end - timedelta(days=60)
        for contact in engagement.contacts
    }
    scores = []
    for number, mail in enumerate(mails):
        urls = re.findall(r'href="([^"]+)"', mail.get("html") or "")
        scanner = requests.Session()
        scanner.trust_env = False
        for url in urls:
            scanner.get(url, headers={"X-Forwarded-For": SCANNER_ADDRESS}, timeout=10)
        email = str(mail["rcpt_tos"][0]).lower()
        engagement = closed.get(email)
        answer = customer_answer(
            email,
            engagement.engagement_type if engagement else "",
            engagement.project_manager if engagement else "",
            engagement.closed_at if engagement else end,
            end,
        )
        if answer is None:
            continue
        link = next((url for url in urls if url.endswith(f"score={answer.score}")), None)
        if link is None:
            continue
        customer = requests.Session()
        customer.trust_env = False
        customer.headers["X-Forwarded-For"] = f"198.51.100.{number % 250 + 1}"
        form = customer.get(link, timeout=10)
        fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form.text))
        action = re.search(r'action="([^"]+)"', form.text)
        if form.status_code != 200 or action is None:
            continue
        base = link.split("/r/", 1)[0]
        sent = customer.post(
            base + action.group(1), data={"score": str(answer.score), "comment": answer.comment, **fields}, timeout=10
        )
        if sent.status_code == 200:
            scores.append(answer.score)
    return scores
