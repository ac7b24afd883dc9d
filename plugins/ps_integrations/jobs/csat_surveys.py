"""CSAT surveys at engagement close (issue #9): closed engagement issues (GitLab) -> the
opportunity's contact roles (Salesforce) -> one survey mail per contact, at most once, a reminder,
and a follow-up issue for every low score recorded by the response service.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr, make_msgid
from typing import Any

from ps_integrations import clock
from ps_integrations.domain.csat import (
    ALLOW_LIST,
    ALREADY_SURVEYED,
    NO_CONTACT,
    OPTED_OUT,
    THROTTLED,
    UNSUBSCRIBE,
    ContactRole,
    choose_recipients,
    engagement_name,
    followup_title,
    make_token,
    mask_email,
    skip_category,
)
from ps_integrations.domain.gitlab_text import inline_markdown
from ps_integrations.domain.opportunity_sync import SALESFORCE_ID, find_marker
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.run_summary import RecordFailure, RunSummary

log = logging.getLogger(__name__)

JOB = "ps_csat_surveys"
CSAT_CONN_ID = "ps_csat"
FOLLOWUP_MARKER = "<!-- ps-integrations:csat-survey={} -->"
CONTACT_QUERY = (
    "SELECT Id, Name, Account.Name, {extra}"
    "(SELECT ContactId, Role, IsPrimary, Contact.Name, Contact.Email, Contact.HasOptedOutOfEmail "
    "FROM OpportunityContactRoles ORDER BY Id), "
    "(SELECT TotalPrice, Product2.Name, Product2.Family FROM OpportunityLineItems ORDER BY Id) "
    "FROM Opportunity WHERE Id IN ({ids})"
)
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?")
REPLY_TO_PROJECT_MANAGER = "project_manager"


@dataclass(frozen=True)
class SurveyConfig:
    engagements_project: str = "professional-services/engagements"
    contact_roles: tuple[str, ...] = ("Decision Maker", "Economic Buyer", "Executive Sponsor")
    throttle_days: int = 90
    reminder_days: int = 5
    token_days: int = 60  # how long rating links work; unsubscribe links never expire
    environment: str = "development"  # anything but "production" mails only the allow-list
    allow_list: tuple[str, ...] = ()
    legal_footer: str = (
        "GitLab Inc., 268 Bush Street #350, San Francisco, CA 94104. You receive this message because you "
        "were a contact on a Professional Services engagement."
    )
    sender: str = "GitLab Professional Services <ps-surveys@example.com>"
    company_name: str = "GitLab"  # named on the landing pages: "<company> Professional Services"
    # Reply-To: "project_manager" (the engagement PM's public GitLab e-mail, else ps_mailbox) or an address
    reply_to: str = REPLY_TO_PROJECT_MANAGER
    ps_mailbox: str = "professional-services@example.com"
    # The customer-facing engagement name: this Opportunity field (e.g. Customer_Facing_Name__c) when
    # set and filled, else "<account> - <offering>" (the deal's main product, else the engagement type)
    engagement_name_field: str = ""
    followup_project: str = "professional-services/engagements"
    followup_labels: tuple[str, ...] = ("csat::follow-up",)
    engagement_types: tuple[str, ...] = (
        "Implementation",
        "Migration",
        "Training",
        "Embedded Engineer",
        "Consulting",
        "Health Check",
        "Integration",
        "Custom SOW",
    )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SurveyConfig:
        from ps_integrations.settings import settings_from_mapping

        return settings_from_mapping(cls, data, "ps_csat_surveys_config")

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def __post_init__(self) -> None:
        from ps_integrations.exceptions import ConfigurationError

        if self.engagement_name_field and not FIELD_NAME.fullmatch(self.engagement_name_field):
            raise ConfigurationError(
                f"ps_csat_surveys_config engagement_name_field {self.engagement_name_field!r} is not a "
                "Salesforce field name (Opportunity field such as Customer_Facing_Name__c)"
            )
        if self.token_days < 1:
            raise ConfigurationError(f"ps_csat_surveys_config token_days must be at least 1, got {self.token_days}")


@dataclass(frozen=True)
class ResponseSite:
    """Where the response service answers and the secret its tokens are signed with (``ps_csat``)."""

    base_url: str
    secret: str = field(repr=False)

    @classmethod
    def from_connection(cls, conn_id: str = CSAT_CONN_ID) -> ResponseSite:
        from airflow.sdk import BaseHook

        from ps_integrations.exceptions import ConfigurationError

        connection = BaseHook.get_connection(conn_id)
        base = str(connection.host or "").rstrip("/")
        if not base.startswith(("https://", "http://")) or not connection.password:
            raise ConfigurationError(
                f"connection {conn_id!r} needs host = the response service's public URL (https://...) "
                "and password = the token signing secret"
            )
        return cls(base, str(connection.password))

    def links(self, survey_id: str, expires: datetime) -> tuple[list[tuple[int, str]], str]:
        """Five rating links that work until ``expires``, and an unsubscribe link that never expires."""
        respond = make_token(self.secret, survey_id, "respond", expires)
        unsubscribe = make_token(self.secret, survey_id, UNSUBSCRIBE)
        return [(score, f"{self.base_url}/r/{respond}?score={score}") for score in range(1, 6)], (
            f"{self.base_url}/u/{unsubscribe}"
        )


@dataclass(frozen=True)
class ClosedEngagement:
    url: str
    iid: int
    title: str
    closed_at: str
    opportunity_id: str
    project_manager: str
    engagement_type: str
    project_manager_id: int | None = None


def survey_message(
    survey: dict[str, Any], site: ResponseSite, config: SurveyConfig, reminder: bool, templates: Any
) -> EmailMessage:
    """The survey (or reminder) mail: text and HTML parts, RFC 8058 one-click unsubscribe headers,
    a Message-ID on the sender's domain and a Reply-To that reaches a person."""
    expires = clock.now() + timedelta(days=config.token_days)
    rating_links, unsubscribe_url = site.links(survey["survey_id"], expires)
    engagement = customer_engagement_name(survey)
    team = f"{config.company_name} Professional Services".strip()
    context = {
        "contact_name": survey["contact_name"] or "there",
        "engagement": engagement,
        "team": team,
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
    message["To"] = formataddr((survey["contact_name"], survey["email"]))
    if survey.get("reply_to"):
        message["Reply-To"] = survey["reply_to"]
    message["Message-ID"] = make_msgid(
        idstring=f"csat-{survey['survey_id']}{'-r' if reminder else ''}", domain=sender_domain(config.sender)
    )
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(templates.get_template("survey.txt.j2").render(**context))
    message.add_alternative(templates.get_template("survey.html.j2").render(**context), subtype="html")
    return message


def sender_domain(sender: str) -> str:
    """The domain of the From address (spam filters score a Message-ID on another domain down)."""
    from email.utils import parseaddr

    from ps_integrations.exceptions import ConfigurationError

    address = parseaddr(sender)[1]
    if "@" not in address:
        raise ConfigurationError(f"ps_csat_surveys_config sender {sender!r} has no e-mail address")
    return address.rsplit("@", 1)[1].lower()


def customer_engagement_name(survey: dict[str, Any]) -> str:
    """What the customer sees; older survey rows have only the internal GitLab title."""
    return str(survey.get("engagement_name") or survey.get("engagement_title") or "")


def survey_templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_csat_surveys")),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True,
    )


class CsatSurveys:
    def __init__(
        self,
        gitlab: Any,
        salesforce: Any,
        store: Any,
        site: ResponseSite,
        config: SurveyConfig,
        run_id: str,
        send: Any,
        dry_run: bool = False,
    ) -> None:
        self.gitlab, self.salesforce, self.store, self.site = gitlab, salesforce, store, site
        self.config, self.run_id, self.send, self.dry_run = config, run_id, send, dry_run
        self.templates = survey_templates()
        self._pm_emails: dict[int, str] = {}
        self.summary = RunSummary(
            counts={
                "engagements closed": 0,
                "surveys sent": 0,
                "reminders sent": 0,
                "skipped": 0,
                **{f"skipped ({reason})": 0 for reason in (THROTTLED, OPTED_OUT, NO_CONTACT, ALLOW_LIST)},
                "follow-up issues": 0,
                "failed": 0,
            }
        )

    # --- the run ------------------------------------------------------------------------------------------
    def run(self, start: datetime, end: datetime, release: list[str]) -> RunSummary:
        if not self.config.production:
            self.summary.note(f"environment {self.config.environment}: only the allow-list is mailed")
        if self.dry_run:
            self.summary.note("dry run: nothing sent, nothing recorded")
        self._release(release)
        engagements = self._closed_engagements(start, end)
        self.summary.add("engagements closed", len(engagements))
        if engagements:
            self._add_surveys(engagements, end)
        self._send_pending()
        self._remind(end)
        self._follow_up()
        self._report_stuck()
        return self.summary

    def _release(self, survey_ids: list[str]) -> None:
        for survey_id in survey_ids:
            released = 0 if self.dry_run else self.store.execute("csat/release", {"survey_id": survey_id})
            released += 0 if self.dry_run else self.store.execute("csat/release_reminder", {"survey_id": survey_id})
            self.summary.note(
                f"survey {survey_id} released by an operator" if released else f"survey {survey_id}: nothing to release"
            )
            if released:
                self._audit(survey_id, "released", "interrupted send released for one more attempt")

    def _closed_engagements(self, start: datetime, end: datetime) -> list[ClosedEngagement]:
        project = self.gitlab.client.projects.get(self.config.engagements_project, lazy=True)
        found = []
        for issue in project.issues.list(
            state="closed", updated_after=start.isoformat(), per_page=100, iterator=True, order_by="updated_at"
        ):
            closed_at = _parse_time(issue.closed_at)
            if closed_at is None or not start <= closed_at < end:
                continue
            assignees = issue.assignees or []
            opportunity_id = find_marker(issue.description) or ""
            if not opportunity_id:
                self.summary.fail(
                    RecordFailure(
                        "GitLab",
                        f"engagement issue {issue.web_url}",
                        "no opportunity link (sync marker)",
                        "description",
                    )
                )
                continue
            found.append(
                ClosedEngagement(
                    issue.web_url,
                    int(issue.iid),
                    str(issue.title).replace("\u200b", ""),
                    closed_at.isoformat(timespec="seconds"),
                    opportunity_id,
                    str(assignees[0]["username"]) if assignees else "",
                    next((label for label in issue.labels if label in self.config.engagement_types), ""),
                    int(assignees[0]["id"]) if assignees else None,
                )
            )
        return found

    def _opportunities(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        valid = sorted({oid for oid in ids if SALESFORCE_ID.match(oid)})
        found: dict[str, dict[str, Any]] = {}
        for offset in range(0, len(valid), 200):
            quoted = ", ".join(f"'{oid}'" for oid in valid[offset : offset + 200])
            extra = f"{self.config.engagement_name_field}, " if self.config.engagement_name_field else ""
            for record in self.salesforce.query_records(CONTACT_QUERY.format(ids=quoted, extra=extra)):
                found[record["Id"]] = found[record["Id"][:15]] = record
        return found

    def _add_surveys(self, engagements: list[ClosedEngagement], end: datetime) -> None:
        opportunities = self._opportunities([e.opportunity_id for e in engagements])
        window = timedelta(days=self.config.throttle_days)
        surveyed_near = {
            row["email"]
            for row in self.store.fetch_all(
                "csat/surveyed_near", {"after": (end - window).isoformat(), "before": (end + window).isoformat()}
            )
        }
        opted_out = {row["email"] for row in self.store.fetch_all("csat/optouts")}
        allow_list = None if self.config.production else list(self.config.allow_list)
        for engagement in engagements:
            opportunity = opportunities.get(engagement.opportunity_id) or opportunities.get(
                engagement.opportunity_id[:15]
            )
            if opportunity is None:
                self.summary.fail(
                    RecordFailure(
                        "Salesforce",
                        f"opportunity {engagement.opportunity_id} of {engagement.url}",
                        "not found (deleted or not visible to the integration user)",
                    )
                )
                continue
            contacts = [
                ContactRole(
                    str(role.get("ContactId") or ""),
                    str((role.get("Contact") or {}).get("Name") or ""),
                    str((role.get("Contact") or {}).get("Email") or ""),
                    str(role.get("Role") or ""),
                    bool(role.get("IsPrimary")),
                    bool((role.get("Contact") or {}).get("HasOptedOutOfEmail")),
                )
                for role in (opportunity.get("OpportunityContactRoles") or {}).get("records") or []
            ]
            already = {
                row["contact_id"]
                for row in self.store.fetch_all("csat/contacts_of_engagement", {"engagement_url": engagement.url})
            }
            decisions = choose_recipients(
                contacts, self.config.contact_roles, opted_out, surveyed_near, already, allow_list
            )
            if not decisions:
                self._skip(NO_CONTACT)
                self.summary.note(f"{engagement.url}: no primary contact or contact in the configured roles")
            items = (opportunity.get("OpportunityLineItems") or {}).get("records") or []
            main_item: dict[str, Any] = max(items, key=lambda item: item.get("TotalPrice") or 0, default={})
            account = str((opportunity.get("Account") or {}).get("Name") or "")
            name = engagement_name(
                _field(opportunity, self.config.engagement_name_field),
                account,
                str((main_item.get("Product2") or {}).get("Name") or ""),
                engagement.engagement_type,
            )
            for decision in decisions:
                email = decision.contact.email.strip().lower()
                if not decision.send:
                    if decision.reason != ALREADY_SURVEYED:  # a re-run, not a skip
                        self._skip(skip_category(decision.reason))
                    log.info("Not surveyed: %s for %s (%s)", mask_email(email), engagement.url, decision.reason)
                    continue
                if self.dry_run:
                    log.info("Dry run: would survey %s for %s", mask_email(email), engagement.url)
                    continue
                self.store.execute(
                    "csat/add_survey",
                    {
                        "survey_id": secrets.token_hex(16),
                        "engagement_url": engagement.url,
                        "engagement_title": engagement.title,
                        "issue_iid": engagement.iid,
                        "opportunity_id": engagement.opportunity_id,
                        "account": account,
                        "engagement_name": name,
                        "company": self.config.company_name,
                        "reply_to": self._reply_to(engagement),
                        "engagement_type": engagement.engagement_type,
                        "sku_category": str((main_item.get("Product2") or {}).get("Family") or ""),
                        "project_manager": engagement.project_manager,
                        "closed_at": engagement.closed_at,
                        "contact_id": decision.contact.contact_id,
                        "contact_name": decision.contact.name,
                        "email": email,
                        "window_at": end.isoformat(),
                        "run_id": self.run_id,
                    },
                )
                surveyed_near.add(email)  # one survey per contact even when two engagements close together

    def _skip(self, category: str) -> None:
        self.summary.add("skipped")
        self.summary.add(f"skipped ({category})")

    def _reply_to(self, engagement: ClosedEngagement) -> str:
        """Where a customer's reply goes: the PM's public GitLab e-mail, else the PS mailbox."""
        if self.config.reply_to != REPLY_TO_PROJECT_MANAGER:
            return self.config.reply_to
        if engagement.project_manager_id is None:
            return self.config.ps_mailbox
        if engagement.project_manager_id not in self._pm_emails:
            from gitlab.exceptions import GitlabError

            try:
                user = self.gitlab.client.users.get(engagement.project_manager_id)
            except GitlabError as error:  # e.g. the PM's account was removed: the PS mailbox answers
                log.warning("Project manager %s not readable in GitLab: %s", engagement.project_manager, error)
                user = None
            public = " ".join(str(getattr(user, "public_email", "") or "").split())
            name = " ".join(str(getattr(user, "name", "") or "").split())
            self._pm_emails[engagement.project_manager_id] = formataddr((name, public)) if "@" in public else ""
        return self._pm_emails[engagement.project_manager_id] or self.config.ps_mailbox

    def _send_pending(self) -> None:
        if self.dry_run:
            return
        for survey in self.store.fetch_all("csat/by_status", {"status": "pending"}):
            # recorded as "sending" before the SMTP call: a crash after it never mails twice
            if not self.store.execute("csat/claim", {"survey_id": survey["survey_id"]}):
                continue
            try:
                self.send(survey_message(survey, self.site, self.config, False, self.templates))
            except Exception as error:
                self.store.execute("csat/release", {"survey_id": survey["survey_id"]})
                self.summary.fail(
                    RecordFailure("SMTP", f"survey {survey['survey_id']}", f"{type(error).__name__}: {error}")
                )
                continue
            self.store.execute("csat/mark_sent", {"survey_id": survey["survey_id"], "sent_at": clock.now_iso()})
            log.info(
                "Survey %s sent to %s (%s)", survey["survey_id"], mask_email(survey["email"]), survey["engagement_url"]
            )
            self.summary.add("surveys sent")
            self._audit(survey["survey_id"], "survey sent", f"to {mask_email(survey['email'])}")

    def _remind(self, end: datetime) -> None:
        due_before = (end - timedelta(days=self.config.reminder_days)).isoformat()
        for survey in self.store.fetch_all("csat/reminders_due", {"due_before": due_before}):
            if self.dry_run:
                log.info("Dry run: would remind %s", mask_email(survey["email"]))
                continue
            if not self.store.execute("csat/claim_reminder", {"survey_id": survey["survey_id"]}):
                continue
            try:
                self.send(survey_message(survey, self.site, self.config, True, self.templates))
            except Exception as error:
                self.store.execute("csat/release_reminder", {"survey_id": survey["survey_id"]})
                self.summary.fail(
                    RecordFailure(
                        "SMTP", f"reminder of survey {survey['survey_id']}", f"{type(error).__name__}: {error}"
                    )
                )
                continue
            self.store.execute(
                "csat/mark_reminder_sent", {"survey_id": survey["survey_id"], "sent_at": clock.now_iso()}
            )
            log.info("Reminder of survey %s sent to %s", survey["survey_id"], mask_email(survey["email"]))
            self.summary.add("reminders sent")
            self._audit(survey["survey_id"], "reminder sent", f"to {mask_email(survey['email'])}")

    def _follow_up(self) -> None:
        due = self.store.fetch_all("csat/followups_due")
        if not due or self.dry_run:
            if due:
                self.summary.note(f"dry run: {len(due)} follow-up issue(s) would be created")
            return
        project = self.gitlab.client.projects.get(self.config.followup_project)
        existing: dict[str, str] | None = None
        for row in due:
            survey_id = row["survey_id"]
            if row["followup_status"] == "creating":  # an earlier attempt may have created it
                if existing is None:
                    existing = self._followup_index(project)
                if survey_id in existing:
                    self.store.execute(
                        "csat/set_followup", {"survey_id": survey_id, "status": "created", "url": existing[survey_id]}
                    )
                    continue
            self.store.execute("csat/set_followup", {"survey_id": survey_id, "status": "creating", "url": ""})
            assignee = self.gitlab.client.users.list(username=row["project_manager"]) if row["project_manager"] else []
            comment = inline_markdown(row["comment"]) if row["comment"] else "_no comment_"
            description = "\n".join(
                [
                    f"A customer rated the engagement **{row['score']} of 5**.",
                    "",
                    f"- Customer: {inline_markdown(row['account'])}",
                    f"- Engagement: {row['engagement_url']}",
                    f"- Closed: {row['closed_at']}",
                    f"- Answered: {row['responded_at']}",
                    "",
                    "Comment:",
                    "",
                    f"> {comment}".replace("\n", "\n> "),
                    "",
                    "Please reach out to the customer and record what was agreed here.",
                    "",
                    FOLLOWUP_MARKER.format(survey_id),
                ]
            )
            issue = project.issues.create(
                {
                    "title": followup_title(row["account"], row["engagement_title"], int(row["score"])),
                    "description": description,
                    "labels": ",".join(self.config.followup_labels),
                    **({"assignee_ids": [assignee[0].id]} if assignee else {}),
                }
            )
            self.store.execute("csat/set_followup", {"survey_id": survey_id, "status": "created", "url": issue.web_url})
            self.summary.add("follow-up issues")
            self._audit(survey_id, "follow-up issue", issue.web_url)

    def _followup_index(self, project: Any) -> dict[str, str]:
        import re

        pattern = re.compile(r"<!-- ps-integrations:csat-survey=([0-9a-f]+) -->")
        index = {}
        for issue in project.issues.list(
            labels=",".join(self.config.followup_labels), state="all", per_page=100, iterator=True
        ):
            match = pattern.search(issue.description or "")
            if match:
                index[match.group(1)] = issue.web_url
        return index

    def _report_stuck(self) -> None:
        stuck = [row["survey_id"] for row in self.store.fetch_all("csat/by_status", {"status": "sending"})]
        stuck += [row["survey_id"] for row in self.store.fetch_all("csat/stuck_reminders")]
        for survey_id in stuck:
            self.summary.fail(
                RecordFailure(
                    "SMTP",
                    f"survey {survey_id}",
                    "a send was interrupted and may or may not have reached the customer; not resent "
                    "automatically - check the mail log, then trigger with release_surveys to send it once more",
                )
            )

    def _audit(self, record_id: str, action: str, detail: str) -> None:
        self.store.execute(
            "platform/record_audit",
            {
                "dag_id": JOB,
                "run_id": self.run_id,
                "record_id": record_id,
                "action": action,
                "detail": detail,
                "recorded_at": clock.now_iso(),
            },
        )


def _field(record: dict[str, Any], path: str) -> str:
    """A (possibly dotted) field of a Salesforce record, "" when unset or not configured."""
    value: Any = record
    for part in path.split(".") if path else []:
        value = value.get(part) if isinstance(value, dict) else None
    return str(value).strip() if isinstance(value, str) else ""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
