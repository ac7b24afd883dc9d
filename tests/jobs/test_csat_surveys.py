"""The CSAT survey job's orchestration against small in-memory fakes of GitLab, Salesforce, the survey
ledger and the mail server (the sandbox and DAG runs are in tests/dags/test_csat_surveys.py)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from ps_integrations.domain.csat import FOLLOWUP_MARKER, read_token
from ps_integrations.exceptions import GitLabNotFoundError
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabUser
from ps_integrations.hooks.salesforce_records import ContactRoleRecord, LineItemRecord, OpportunityContacts
from ps_integrations.jobs.csat_surveys import CsatSurveys, ResponseSite, SurveyConfig
from ps_integrations.stores.csat import LowScore, NewSurvey, SurveyMail

START = datetime(2026, 11, 23, 9, tzinfo=UTC)
END = START + timedelta(hours=1)
PROJECT = "professional-services/engagements"
OPPORTUNITY = "0065g0000000007AAA"
PM = GitLabUser(41, "amara.ps1", "Amara Okafor", "amara@example.com")
SITE = ResponseSite("https://csat.example.com", "job-test-secret")


def issue(iid: int, description: str, closed_at: datetime | None = START + timedelta(minutes=10), **changes):
    fields = dict(
        project=PROJECT,
        iid=iid,
        id=1000 + iid,
        title=f"Acme: Migration {iid}",
        description=description,
        state="closed",
        labels=("Migration", "ps::done"),
        web_url=f"https://gitlab.example.com/{PROJECT}/-/issues/{iid}",
        created_at="2026-10-01T00:00:00Z",
        updated_at="2026-11-23T09:10:00Z",
        closed_at=closed_at.isoformat().replace("+00:00", "Z") if closed_at else None,
        due_date=None,
        assignees=(PM,),
        author=None,
        confidential=False,
        time_estimate=0,
        total_time_spent=0,
    )
    return GitLabIssue(**{**fields, **changes})


def linked(iid: int, **changes) -> GitLabIssue:
    return issue(iid, f"Engagement\n<!-- ps-integrations:opportunity-id={OPPORTUNITY} -->", **changes)


class FakeGitLab:
    def __init__(self, issues: list[GitLabIssue], users: list[GitLabUser] = (PM,)) -> None:
        self.issues = list(issues)
        self.users = {user.id: user for user in users}
        self.created: list[GitLabIssue] = []

    def list_issues(self, project, *, state="all", labels=(), updated_after=None, order_by="created_at", sort="asc"):
        return [
            found
            for found in self.issues
            if found.project == project
            and state in ("all", found.state)
            and set(labels) <= set(found.labels)
            and (updated_after is None or found.updated_at >= updated_after[:19])
        ]

    def create_issue(self, project, title, description, *, labels=(), assignee_ids=()):
        iid = len(self.issues) + 1
        assignees = tuple(self.users[user_id] for user_id in assignee_ids)
        created = issue(iid, description, None, title=title, labels=labels, state="opened", assignees=assignees)
        created = dataclasses.replace(created, project=project)
        self.issues.append(created)
        self.created.append(created)
        return created

    def find_user(self, username):
        return next((user for user in self.users.values() if user.username == username), None)

    def get_user(self, user_id):
        if user_id not in self.users:
            raise GitLabNotFoundError(404, f"GET /users/{user_id}", "404 User Not Found")
        return self.users[user_id]


def role(contact_id: str, email: str, role_name: str = "Decision Maker", primary: bool = False, opted_out=False):
    return ContactRoleRecord(contact_id, f"Contact {contact_id}", email, role_name, primary, opted_out)


class FakeSalesforce:
    def __init__(self, *opportunities: OpportunityContacts) -> None:
        self.opportunities = {opportunity.id: opportunity for opportunity in opportunities}
        self.asked: list[list[str]] = []

    def opportunity_contacts(self, opportunity_ids, extra_fields=()):
        self.asked.append(list(opportunity_ids))
        return [self.opportunities[oid] for oid in opportunity_ids if oid in self.opportunities]


def acme(*roles: ContactRoleRecord) -> OpportunityContacts:
    items = (LineItemRecord(5000.0, "Training Day", "Education"), LineItemRecord(40000.0, "Migration", "Services"))
    return OpportunityContacts(OPPORTUNITY, "Acme deal", "Acme Corp", roles, items, {})


@dataclasses.dataclass
class Row:
    survey: NewSurvey
    survey_id: str
    status: str = "pending"
    reminder_status: str = ""
    answer: tuple[int, str] | None = None
    followup_status: str = ""
    followup_url: str = ""


class FakeLedger:
    """The survey ledger's contract, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.optouts: set[str] = set()
        self.audits: list[tuple[str, str]] = []
        self._ids = (f"{number:032x}" for number in itertools.count(1))

    def surveyed_between(self, after, before):
        return {row.survey.email for row in self.rows.values() if after < row.survey.window_at < before}

    def opted_out(self):
        return set(self.optouts)

    def contacts_surveyed_for(self, engagement_url):
        return {row.survey.contact_id for row in self.rows.values() if row.survey.engagement_url == engagement_url}

    def add(self, survey):
        key = (survey.engagement_url, survey.contact_id)
        if any((row.survey.engagement_url, row.survey.contact_id) == key for row in self.rows.values()):
            return ""
        survey_id = next(self._ids)
        self.rows[survey_id] = Row(survey, survey_id)
        return survey_id

    def _mail(self, row):
        s = row.survey
        return SurveyMail(
            row.survey_id, s.engagement_url, s.engagement_title, s.engagement_name, s.contact_name, s.email, s.reply_to
        )

    def _move(self, survey_id, attribute, before, after):
        row = self.rows.get(survey_id)
        if row is None or getattr(row, attribute) != before:
            return False
        setattr(row, attribute, after)
        return True

    def pending(self):
        return [self._mail(row) for row in self.rows.values() if row.status == "pending"]

    def claim(self, survey_id):
        return self._move(survey_id, "status", "pending", "sending")

    def release(self, survey_id):
        return self._move(survey_id, "status", "sending", "pending")

    def mark_sent(self, survey_id):
        self._move(survey_id, "status", "sending", "sent")

    def reminders_due(self, window_before):
        return [
            self._mail(row)
            for row in self.rows.values()
            if row.status == "sent"
            and row.reminder_status == ""
            and row.answer is None
            and row.survey.email not in self.optouts
            and row.survey.window_at <= window_before
        ]

    def claim_reminder(self, survey_id):
        return self._move(survey_id, "reminder_status", "", "sending")

    def release_reminder(self, survey_id):
        return self._move(survey_id, "reminder_status", "sending", "")

    def mark_reminder_sent(self, survey_id):
        self._move(survey_id, "reminder_status", "sending", "sent")

    def interrupted_sends(self):
        return [row.survey_id for row in self.rows.values() if "sending" in (row.status, row.reminder_status)]

    def low_scores_without_followup(self):
        return [
            LowScore(
                row.survey_id,
                row.survey.engagement_url,
                row.survey.engagement_title,
                row.survey.account,
                row.survey.project_manager,
                row.survey.closed_at,
                row.answer[0],
                row.answer[1],
                "2026-11-23T09:30:00+00:00",
                row.followup_status == "creating",
            )
            for row in self.rows.values()
            if row.answer is not None and row.answer[0] <= 2 and row.followup_status in ("", "creating")
        ]

    def followup_creating(self, survey_id):
        self.rows[survey_id].followup_status = "creating"

    def followup_created(self, survey_id, url):
        self.rows[survey_id].followup_status, self.rows[survey_id].followup_url = "created", url

    def audit(self, survey_id, action, detail):
        self.audits.append((survey_id, action))


class Mailbox:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def __call__(self, message: EmailMessage) -> None:
        self.sent.append(message)

    @property
    def recipients(self) -> list[str]:
        return [str(message["To"]) for message in self.sent]


CONFIG = SurveyConfig(allow_list=("example.com",))


def earlier_survey(email: str, window_end: datetime) -> NewSurvey:
    text = dict.fromkeys(("engagement_title", "account", "engagement_name", "company", "reply_to"), "earlier")
    text.update(dict.fromkeys(("engagement_type", "sku_category", "project_manager", "contact_name"), ""))
    return NewSurvey(
        engagement_url="https://gitlab.example.com/other/-/issues/9",
        issue_iid=9,
        opportunity_id=OPPORTUNITY,
        closed_at=window_end.isoformat(),
        contact_id="003Z",
        email=email,
        window_at=window_end.isoformat(),
        **text,
    )


def job(gitlab, salesforce, ledger, send, config=CONFIG, dry_run=False):
    return CsatSurveys(gitlab, salesforce, ledger, SITE, config, send, dry_run)


def test_a_closed_engagement_surveys_its_primary_and_role_contacts_once():
    gitlab = FakeGitLab([linked(1), linked(2, closed_at=START - timedelta(days=2))])  # 2 closed before the window
    salesforce = FakeSalesforce(
        acme(
            role("003A", "Pat@Acme.Example.com", "Evaluator", primary=True),
            role("003B", "sam@acme.example.com", "Economic Buyer"),
            role("003C", "lee@acme.example.com", "Evaluator"),  # neither primary nor in a configured role
        )
    )
    ledger, mailbox = FakeLedger(), Mailbox()

    summary = job(gitlab, salesforce, ledger, mailbox).run(START, END, [])

    assert summary.counts["engagements closed"] == 1 and summary.counts["surveys sent"] == 2
    assert sorted(mailbox.recipients) == [
        "Contact 003A <pat@acme.example.com>",
        "Contact 003B <sam@acme.example.com>",
    ]
    message = mailbox.sent[0]
    assert message["Subject"] == "How did we do on Acme Corp - Migration?"  # the main product, not the GitLab title
    assert message["Reply-To"] == "Amara Okafor <amara@example.com>"
    assert message["Message-ID"].endswith("@example.com>")
    rows = list(ledger.rows.values())
    assert {row.status for row in rows} == {"sent"}
    assert {(row.survey.sku_category, row.survey.engagement_type, row.survey.project_manager) for row in rows} == {
        ("Services", "Migration", "amara.ps1")
    }
    unsubscribe = message["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    assert read_token(SITE.secret, unsubscribe, END, "unsubscribe") in ledger.rows
    assert [action for _, action in ledger.audits] == ["survey sent", "survey sent"]

    again = job(gitlab, salesforce, ledger, mailbox).run(START, END, [])  # a re-run of the window
    assert again.counts["surveys sent"] == 0 and again.counts["skipped"] == 0 and len(mailbox.sent) == 2


def test_records_that_cannot_be_surveyed_fail_by_name_and_the_others_go_through():
    unlinked = issue(3, "An engagement nobody linked to an opportunity")
    orphan = issue(4, "<!-- ps-integrations:opportunity-id=0065g0000000009ZZZ -->")
    gitlab = FakeGitLab([unlinked, orphan, linked(1)])
    salesforce = FakeSalesforce(acme(role("003A", "pat@acme.example.com", primary=True)))
    ledger, mailbox = FakeLedger(), Mailbox()

    summary = job(gitlab, salesforce, ledger, mailbox).run(START, END, [])

    assert summary.counts["surveys sent"] == 1 and summary.counts["failed"] == 2
    described = [failure.describe() for failure in summary.failures]
    assert (
        described[0]
        == f"GitLab engagement issue {unlinked.web_url} field description: no opportunity link (sync marker)"
    )
    assert "Salesforce opportunity 0065g0000000009ZZZ" in described[1] and "not found" in described[1]


def test_skipped_contacts_are_counted_per_reason():
    gitlab = FakeGitLab([linked(1)])
    salesforce = FakeSalesforce(
        acme(
            role("003A", "opted@acme.example.com", primary=True, opted_out=True),
            role("003B", "gone@acme.example.com"),
            role("003C", "asked@acme.example.com"),
            role("003D", "someone@elsewhere.org"),
            role("003E", ""),
        )
    )
    ledger = FakeLedger()
    ledger.optouts.add("gone@acme.example.com")
    ledger.add(earlier_survey("asked@acme.example.com", END - timedelta(days=30)))  # another engagement

    summary = job(gitlab, salesforce, ledger, Mailbox()).run(START, END, [])

    counts = {key: value for key, value in summary.counts.items() if key.startswith("skipped")}
    assert counts == {
        "skipped": 5,
        "skipped (throttled)": 1,
        "skipped (opted out)": 2,
        "skipped (no contact)": 1,
        "skipped (allow-list)": 1,
    }


def test_a_refused_send_is_released_and_sent_by_the_next_run():
    gitlab, ledger = FakeGitLab([linked(1)]), FakeLedger()
    salesforce = FakeSalesforce(acme(role("003A", "pat@acme.example.com", primary=True)))

    def refused(message: EmailMessage) -> None:
        raise OSError("421 4.7.0 try again later")

    summary = job(gitlab, salesforce, ledger, refused).run(START, END, [])
    assert summary.counts["failed"] == 1 and "421" in summary.failures[0].reason
    assert [row.status for row in ledger.rows.values()] == ["pending"]

    mailbox = Mailbox()
    assert job(gitlab, salesforce, ledger, mailbox).run(START, END, []).counts["surveys sent"] == 1
    assert len(mailbox.sent) == 1


class Killed(BaseException):
    """What a task timeout or SIGTERM raises in the task (not an Exception)."""


def test_a_send_killed_after_the_server_accepted_is_held_until_an_operator_releases_it():
    gitlab, ledger, mailbox = FakeGitLab([linked(1)]), FakeLedger(), Mailbox()
    salesforce = FakeSalesforce(acme(role("003A", "pat@acme.example.com", primary=True)))

    def accepted_then_killed(message: EmailMessage) -> None:
        mailbox(message)
        raise Killed

    with pytest.raises(Killed):
        job(gitlab, salesforce, ledger, accepted_then_killed).run(START, END, [])
    [survey_id] = ledger.rows

    retry = job(gitlab, salesforce, ledger, mailbox).run(START, END, [])
    assert len(mailbox.sent) == 1 and retry.counts["failed"] == 1
    assert retry.failures[0].record == f"survey {survey_id}" and "release_surveys" in retry.failures[0].reason

    released = job(gitlab, salesforce, ledger, mailbox).run(START, END, [survey_id])
    assert f"survey {survey_id} released by an operator" in released.notes
    assert len(mailbox.sent) == 2 and released.counts["failed"] == 0
    assert (survey_id, "released") in ledger.audits


def test_one_reminder_after_the_reminder_days_and_none_after_an_answer():
    gitlab, ledger, mailbox = FakeGitLab([linked(1)]), FakeLedger(), Mailbox()
    salesforce = FakeSalesforce(
        acme(role("003A", "pat@acme.example.com", primary=True), role("003B", "sam@acme.example.com"))
    )
    job(gitlab, salesforce, ledger, mailbox).run(START, END, [])
    answered = next(row for row in ledger.rows.values() if row.survey.contact_id == "003B")
    answered.answer = (5, "great")

    later = END + timedelta(days=4)
    assert (
        job(gitlab, salesforce, ledger, mailbox).run(later, later + timedelta(hours=1), []).counts["reminders sent"]
        == 0
    )
    later = END + timedelta(days=5)
    reminded = job(gitlab, salesforce, ledger, mailbox).run(later, later + timedelta(hours=1), [])
    assert reminded.counts["reminders sent"] == 1
    assert mailbox.sent[-1]["Subject"].startswith("Reminder: ") and "pat@acme" in mailbox.recipients[-1]
    assert (
        job(gitlab, salesforce, ledger, mailbox).run(later, later + timedelta(hours=2), []).counts["reminders sent"]
        == 0
    )


def test_a_low_score_raises_one_follow_up_issue_for_the_project_manager_also_after_a_crash():
    gitlab, ledger, mailbox = FakeGitLab([linked(1)]), FakeLedger(), Mailbox()
    salesforce = FakeSalesforce(
        acme(role("003A", "pat@acme.example.com", primary=True), role("003B", "sam@acme.example.com"))
    )
    job(gitlab, salesforce, ledger, mailbox).run(START, END, [])
    first, second = ledger.rows.values()
    first.answer, second.answer = (1, "@all /close late"), (2, "")

    summary = job(gitlab, salesforce, ledger, mailbox).run(START, END, [])

    assert summary.counts["follow-up issues"] == 2
    [one, two] = gitlab.created
    assert one.assignees == (PM,) and one.labels == ("csat::follow-up",) and one.project == PROJECT
    assert one.title == "CSAT follow-up: Acme Corp rated Acme: Migration 1 1/5"
    assert "\\@all" in one.description and FOLLOWUP_MARKER.format(first.survey_id) in one.description
    assert first.followup_url == one.web_url and second.followup_url == two.web_url

    # a crash after GitLab created the issue, before it was recorded: the marker finds it
    first.followup_status, first.followup_url = "creating", ""
    again = job(gitlab, salesforce, ledger, mailbox).run(START, END, [])
    assert again.counts["follow-up issues"] == 0 and len(gitlab.created) == 2 and first.followup_url == one.web_url


def test_a_project_manager_gitlab_cannot_read_gets_the_ps_mailbox_as_reply_to():
    gitlab = FakeGitLab([linked(1, assignees=(GitLabUser(77, "left.company"),))])
    salesforce = FakeSalesforce(acme(role("003A", "pat@acme.example.com", primary=True)))
    mailbox = Mailbox()
    job(gitlab, salesforce, FakeLedger(), mailbox).run(START, END, [])
    assert mailbox.sent[0]["Reply-To"] == CONFIG.ps_mailbox


def test_dry_run_sends_and_records_nothing():
    gitlab, ledger, mailbox = FakeGitLab([linked(1)]), FakeLedger(), Mailbox()
    salesforce = FakeSalesforce(acme(role("003A", "pat@acme.example.com", primary=True)))
    summary = job(gitlab, salesforce, ledger, mailbox, dry_run=True).run(START, END, ["0" * 32])
    assert mailbox.sent == [] and ledger.rows == {} and "dry run: nothing sent, nothing recorded" in summary.notes


def test_a_mail_that_cannot_be_built_fails_by_name_and_leaves_the_survey_to_send_later():
    gitlab, ledger, mailbox = FakeGitLab([linked(1)]), FakeLedger(), Mailbox()
    salesforce = FakeSalesforce(acme(role("003A", "pat@acme.example.com", primary=True)))
    broken = dataclasses.replace(CONFIG, sender="Professional Services")  # no address: no Message-ID domain

    summary = job(gitlab, salesforce, ledger, mailbox, config=broken).run(START, END, [])

    [failure] = summary.failures
    assert "ConfigurationError" in failure.reason and "sender" in failure.reason
    assert mailbox.sent == [] and [row.status for row in ledger.rows.values()] == ["pending"]
    assert job(gitlab, salesforce, ledger, mailbox).run(START, END, []).counts["surveys sent"] == 1
