"""The survey and reminder mail: text and HTML parts, RFC 8058 one-click unsubscribe headers, a
Message-ID on the sender's domain and a Reply-To that reaches a person."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr, make_msgid, parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING

from ps_integrations.exceptions import ConfigurationError
from ps_integrations.jobs.csat_surveys.config import CONFIG_VARIABLE, ResponseSite, SurveyConfig
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.stores.csat import SurveyMail

if TYPE_CHECKING:
    from jinja2 import Environment


def survey_message(
    survey: SurveyMail, site: ResponseSite, config: SurveyConfig, reminder: bool, now: datetime
) -> EmailMessage:
    """The survey (or, with ``reminder``, its reminder) mail; rating links work ``token_days`` from ``now``."""
    expires = now + timedelta(days=config.token_days)
    rating_links, unsubscribe_url = site.links(survey.survey_id, expires)
    engagement = survey.customer_engagement_name
    context = {
        "contact_name": survey.contact_name or "there",
        "engagement": engagement,
        "team": f"{config.company_name} Professional Services".strip(),
        "rating_links": rating_links,
        "unsubscribe_url": unsubscribe_url,
        "legal_footer": config.legal_footer,
        "reminder": reminder,
        "expires_on": expires.date().isoformat(),
    }
    # SMTP's 998-character line limit, not the 78 of the default policy: Python folds some subjects whole
    # onto a continuation line (" How did we do..."), which mail clients show with a leading space
    message = EmailMessage(policy=SMTP_POLICY.clone(max_line_length=998))
    prefix = "Reminder: " if reminder else ""
    message["Subject"] = f"{prefix}How did we do on {engagement}?"
    message["From"] = config.sender
    message["To"] = formataddr((survey.contact_name, survey.email))
    if survey.reply_to:
        message["Reply-To"] = survey.reply_to
    message["Message-ID"] = make_msgid(
        idstring=f"csat-{survey.survey_id}{'-r' if reminder else ''}", domain=sender_domain(config.sender)
    )
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    templates = survey_templates()
    message.set_content(templates.get_template("survey.txt.j2").render(**context))
    message.add_alternative(templates.get_template("survey.html.j2").render(**context), subtype="html")
    return message


def sender_domain(sender: str) -> str:
    """The domain of the From address (spam filters score a Message-ID on another domain down)."""
    address = parseaddr(sender)[1]
    if "@" not in address:
        raise ConfigurationError(f"{CONFIG_VARIABLE} sender {sender!r} has no e-mail address")
    return address.rsplit("@", 1)[1].lower()


@lru_cache(maxsize=1)
def survey_templates() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_csat_surveys")),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True,
    )
