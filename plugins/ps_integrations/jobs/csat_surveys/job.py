"""CSAT surveys at engagement close (issue #9): closed engagement issues (GitLab) -> the
opportunity's contact roles (Salesforce) -> one survey mail per contact, at most once, a reminder,
and a follow-up issue for every low score recorded by the response service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formataddr

from ps_integrations import clock
from ps_integrations.domain.csat import (
    ALLOW_LIST,
    ALREADY_SURVEYED,
    NO_CONTACT,
    OPTED_OUT,
    THROTTLED,
    ContactRole,
    Decision,
    choose_recipients,
    engagement_name,
    followup_description,
    followup_survey_id,
    followup_title,
    mask_email,
    skip_category,
)
from ps_integrations.domain.opportunity_sync import SALESFORCE_ID, find_marker
from ps_integrations.exceptions import GitLabApiError
from ps_integrations.hooks.gitlab import GitLabIssue
from ps_integrations.hooks.salesforce_records import ContactRoleRecord, OpportunityContacts
from ps_integrations.jobs.csat_surveys.config import REPLY_TO_PROJECT_MANAGER, ResponseSite, SurveyConfig
from ps_integrations.jobs.csat_surveys.mail import survey_message
from ps_integrations.jobs.csat_surveys.ports import ContactDirectory, IssueTracker, SendMail, SurveyRecords
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.stores.csat import LowScore, NewSurvey, SurveyMail

log = logging.getLogger(__name__)

JOB = "ps_csat_surveys"
SKIP_REASONS = (THROTTLED, OPTED_OUT, NO_CONTACT, ALLOW_LIST)
INTERRUPTED_SEND = (
    "a send was interrupted and may or may not have reached the customer; not resent "
    "automatically - check the mail log, then trigger with release_surveys to send it once more"
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


def closed_engagement(issue: GitLabIssue, closed_at: datetime, engagement_types: tuple[str, ...]) -> ClosedEngagement:
    """The engagement an issue closed in the window stands for (its first assignee is the PM)."""
    manager = issue.assignees[0] if issue.assignees else None
    return ClosedEngagement(
        issue.web_url,
        issue.iid,
        issue.title.replace("\u200b", ""),
        closed_at.isoformat(timespec="seconds"),
        find_marker(issue.description) or "",
        manager.username if manager else "",
        next((label for label in issue.labels if label in engagement_types), ""),
        manager.id if manager else None,
    )


class CsatSurveys:
    def __init__(
        self,
        gitlab: IssueTracker,
        salesforce: ContactDirectory,
        ledger: SurveyRecords,
        site: ResponseSite,
        config: SurveyConfig,
        send: SendMail,
        dry_run: bool = False,
    ) -> None:
        self.gitlab, self.salesforce, self.ledger, self.site = gitlab, salesforce, ledger, site
        self.config, self.send, self.dry_run = config, send, dry_run
        self._reply_addresses: dict[int, str] = {}
        self.summary = RunSummary(
            counts={
                "engagements closed": 0,
                "surveys sent": 0,
                "reminders sent": 0,
                "skipped": 0,
                **{f"skipped ({reason})": 0 for reason in SKIP_REASONS},
                "follow-up issues": 0,
                "failed": 0,
            }
        )

    # --- the run ------------------------------------------------------------------------------------------
    def run(self, start: datetime, end: datetime, release: list[str]) -> RunSummary:
        self.announce_mode()
        self.release_interrupted(release)
        engagements = self.read_closed_engagements(start, end)
        self.add_surveys(engagements, end)
        self.send_surveys()
        self.send_reminders(end)
        self.raise_followups()
        self.report_interrupted()
        return self.summary

    def announce_mode(self) -> None:
        if not self.config.production:
            self.summary.note(f"environment {self.config.environment}: only the allow-list is mailed")
        if self.dry_run:
            self.summary.note("dry run: nothing sent, nothing recorded")

    def release_interrupted(self, survey_ids: list[str]) -> None:
        """An operator checked the mail log: these interrupted sends may go out once more."""
        for survey_id in survey_ids:
            released = False
            if not self.dry_run:
                released = self.ledger.release(survey_id) | self.ledger.release_reminder(survey_id)
            self.summary.note(
                f"survey {survey_id} released by an operator" if released else f"survey {survey_id}: nothing to release"
            )
            if released:
                self.ledger.audit(survey_id, "released", "interrupted send released for one more attempt")

    # --- engagements and recipients ------------------------------------------------------------------
    def read_closed_engagements(self, start: datetime, end: datetime) -> list[ClosedEngagement]:
        """Engagement issues closed in [start, end) and linked to an opportunity."""
        found = []
        issues = self.gitlab.list_issues(
            self.config.engagements_project,
            state="closed",
            updated_after=start.isoformat(),
            order_by="updated_at",
            sort="desc",
        )
        for issue in issues:
            closed_at = _moment(issue.closed_at) if issue.closed_at else None
            if closed_at is None or not start <= closed_at < end:
                continue
            engagement = closed_engagement(issue, closed_at, self.config.engagement_types)
            if not engagement.opportunity_id:
                self.summary.fail(
                    RecordFailure(
                        "GitLab",
                        f"engagement issue {issue.web_url}",
                        "no opportunity link (sync marker)",
                        "description",
                    )
                )
                continue
            found.append(engagement)
        self.summary.add("engagements closed", len(found))
        return found

    def add_surveys(self, engagements: list[ClosedEngagement], end: datetime) -> None:
        """Decide who of each engagement's contacts is asked, and record a survey for each."""
        if not engagements:
            return
        opportunities = self._opportunities([engagement.opportunity_id for engagement in engagements])
        window = timedelta(days=self.config.throttle_days)
        surveyed_near = self.ledger.surveyed_between((end - window).isoformat(), (end + window).isoformat())
        opted_out = self.ledger.opted_out()
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
            decisions = choose_recipients(
                [_contact(role) for role in opportunity.contact_roles],
                self.config.contact_roles,
                opted_out,
                surveyed_near,
                self.ledger.contacts_surveyed_for(engagement.url),
                allow_list,
            )
            if not decisions:
                self._skip(NO_CONTACT)
                self.summary.note(f"{engagement.url}: no primary contact or contact in the configured roles")
            for decision in decisions:
                email = decision.contact.email.strip().lower()
                if self._record_survey(engagement, opportunity, decision, email, end):
                    surveyed_near.add(email)  # one survey per contact even when two engagements close together

    def _opportunities(self, ids: list[str]) -> dict[str, OpportunityContacts]:
        valid = sorted({oid for oid in ids if SALESFORCE_ID.match(oid)})
        found: dict[str, OpportunityContacts] = {}
        for opportunity in self.salesforce.opportunity_contacts(valid, self.config.extra_opportunity_fields):
            found[opportunity.id] = found[opportunity.id[:15]] = opportunity
        return found

    def _record_survey(
        self,
        engagement: ClosedEngagement,
        opportunity: OpportunityContacts,
        decision: Decision,
        email: str,
        end: datetime,
    ) -> bool:
        if not decision.send:
            if decision.reason != ALREADY_SURVEYED:  # a re-run, not a skip
                self._skip(skip_category(decision.reason))
            log.info("Not surveyed: %s for %s (%s)", mask_email(email), engagement.url, decision.reason)
            return False
        if self.dry_run:
            log.info("Dry run: would survey %s for %s", mask_email(email), engagement.url)
            return False
        main = max(opportunity.line_items, key=lambda item: item.total_price, default=None)
        name_field = self.config.engagement_name_field
        self.ledger.add(
            NewSurvey(
                engagement_url=engagement.url,
                engagement_title=engagement.title,
                issue_iid=engagement.iid,
                opportunity_id=engagement.opportunity_id,
                account=opportunity.account_name,
                engagement_name=engagement_name(
                    opportunity.fields.get(name_field, "") if name_field else "",
                    opportunity.account_name,
                    main.product_name if main else "",
                    engagement.engagement_type,
                ),
                company=self.config.company_name,
                reply_to=self._reply_to(engagement),
                engagement_type=engagement.engagement_type,
                sku_category=main.product_family if main else "",
                project_manager=engagement.project_manager,
                closed_at=engagement.closed_at,
                contact_id=decision.contact.contact_id,
                contact_name=decision.contact.name,
                email=email,
                window_at=end.isoformat(),
            )
        )
        return True

    def _skip(self, category: str) -> None:
        self.summary.add("skipped")
        self.summary.add(f"skipped ({category})")

    def _reply_to(self, engagement: ClosedEngagement) -> str:
        """Where a customer's reply goes: the PM's public GitLab e-mail, else the PS mailbox."""
        if self.config.reply_to != REPLY_TO_PROJECT_MANAGER:
            return self.config.reply_to
        manager_id = engagement.project_manager_id
        if manager_id is None:
            return self.config.ps_mailbox
        if manager_id not in self._reply_addresses:
            try:
                user = self.gitlab.get_user(manager_id)
            except GitLabApiError as error:  # e.g. the PM's account was removed: the PS mailbox answers
                log.warning("Project manager %s not readable in GitLab: %s", engagement.project_manager, error)
                self._reply_addresses[manager_id] = ""
            else:
                public, name = " ".join(user.public_email.split()), " ".join(user.name.split())
                self._reply_addresses[manager_id] = formataddr((name, public)) if "@" in public else ""
        return self._reply_addresses[manager_id] or self.config.ps_mailbox

    # --- mails --------------------------------------------------------------------------------------------
    def send_surveys(self) -> None:
        if self.dry_run:
            return
        for survey in self.ledger.pending():
            sent = self._send_once(
                survey,
                reminder=False,
                claim=self.ledger.claim,
                release=self.ledger.release,
                mark_sent=self.ledger.mark_sent,
            )
            if sent:
                log.info("Survey %s sent to %s (%s)", survey.survey_id, mask_email(survey.email), survey.engagement_url)
                self.summary.add("surveys sent")
                self.ledger.audit(survey.survey_id, "survey sent", f"to {mask_email(survey.email)}")

    def send_reminders(self, end: datetime) -> None:
        due_before = (end - timedelta(days=self.config.reminder_days)).isoformat()
        for survey in self.ledger.reminders_due(due_before):
            if self.dry_run:
                log.info("Dry run: would remind %s", mask_email(survey.email))
                continue
            sent = self._send_once(
                survey,
                reminder=True,
                claim=self.ledger.claim_reminder,
                release=self.ledger.release_reminder,
                mark_sent=self.ledger.mark_reminder_sent,
            )
            if sent:
                log.info("Reminder of survey %s sent to %s", survey.survey_id, mask_email(survey.email))
                self.summary.add("reminders sent")
                self.ledger.audit(survey.survey_id, "reminder sent", f"to {mask_email(survey.email)}")

    def _send_once(
        self,
        survey: SurveyMail,
        *,
        reminder: bool,
        claim: Callable[[str], bool],
        release: Callable[[str], bool],
        mark_sent: Callable[[str], None],
    ) -> bool:
        """Claimed ("sending") before the SMTP call, so a crash after it never mails twice."""
        if not claim(survey.survey_id):
            return False
        try:
            self.send(survey_message(survey, self.site, self.config, reminder, clock.now()))
        except Exception as error:  # not built, refused or not connected: nothing went out, the next run sends it
            release(survey.survey_id)
            what = f"reminder of survey {survey.survey_id}" if reminder else f"survey {survey.survey_id}"
            self.summary.fail(RecordFailure("SMTP", what, f"{type(error).__name__}: {error}"))
            return False
        mark_sent(survey.survey_id)
        return True

    # --- follow-up issues ---------------------------------------------------------------------------------
    def raise_followups(self) -> None:
        """One follow-up issue per low score, assigned to the project manager."""
        due = self.ledger.low_scores_without_followup()
        if due and self.dry_run:
            self.summary.note(f"dry run: {len(due)} follow-up issue(s) would be created")
        if not due or self.dry_run:
            return
        existing: dict[str, str] | None = None
        for low in due:
            if low.interrupted:  # an earlier attempt may have created it
                existing = self._existing_followups() if existing is None else existing
                if low.survey_id in existing:
                    self.ledger.followup_created(low.survey_id, existing[low.survey_id])
                    continue
            self.ledger.followup_creating(low.survey_id)
            issue = self._create_followup(low)
            self.ledger.followup_created(low.survey_id, issue.web_url)
            self.summary.add("follow-up issues")
            self.ledger.audit(low.survey_id, "follow-up issue", issue.web_url)

    def _create_followup(self, low: LowScore) -> GitLabIssue:
        manager = self.gitlab.find_user(low.project_manager) if low.project_manager else None
        return self.gitlab.create_issue(
            self.config.followup_project,
            followup_title(low.account, low.engagement_title, low.score),
            followup_description(
                low.survey_id, low.score, low.account, low.engagement_url, low.closed_at, low.responded_at, low.comment
            ),
            labels=self.config.followup_labels,
            assignee_ids=(manager.id,) if manager else (),
        )

    def _existing_followups(self) -> dict[str, str]:
        """Survey id -> URL of every follow-up issue already raised (found by the marker)."""
        index = {}
        for issue in self.gitlab.list_issues(self.config.followup_project, labels=self.config.followup_labels):
            survey_id = followup_survey_id(issue.description)
            if survey_id:
                index[survey_id] = issue.web_url
        return index

    def report_interrupted(self) -> None:
        for survey_id in self.ledger.interrupted_sends():
            self.summary.fail(RecordFailure("SMTP", f"survey {survey_id}", INTERRUPTED_SEND))


def _contact(role: ContactRoleRecord) -> ContactRole:
    return ContactRole(role.contact_id, role.name, role.email, role.role, role.is_primary, role.opted_out_of_email)


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
