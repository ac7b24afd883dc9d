"""CSAT's state: surveys, their sends and reminders, answers, follow-up issues, and the latest summary.

``SurveyLedger`` is what ``ps_csat_surveys`` asks of the state database, ``CsatResults`` what
``ps_csat_summary`` and the "PS CSAT" page ask. SQL is in ``include/sql/csat/`` and loaded by name here
only; callers see typed records, never a row or a column name.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from ps_integrations import clock
from ps_integrations.domain.csat import SurveyOutcome
from ps_integrations.state_store import StateStore

SURVEYS_JOB = "ps_csat_surveys"
SUMMARY_JOB = "ps_csat_summary"
FOLLOWUP_CREATING, FOLLOWUP_CREATED = "creating", "created"


@dataclass(frozen=True)
class NewSurvey:
    """A survey the job decided to send: one contact of one closed engagement."""

    engagement_url: str
    engagement_title: str  # internal (GitLab)
    issue_iid: int
    opportunity_id: str
    account: str
    engagement_name: str  # as the customer knows it
    company: str
    reply_to: str
    engagement_type: str
    sku_category: str
    project_manager: str
    closed_at: str
    contact_id: str
    contact_name: str
    email: str
    window_at: str  # end of the run's window: throttle and reminder windows are measured from it


@dataclass(frozen=True)
class SurveyMail:
    """What a survey or reminder mail needs (the address is only here and in the mail)."""

    survey_id: str
    engagement_url: str
    engagement_title: str
    engagement_name: str
    contact_name: str
    email: str
    reply_to: str

    @property
    def customer_engagement_name(self) -> str:
        """What the customer sees; surveys added before the name existed have only the GitLab title."""
        return self.engagement_name or self.engagement_title


@dataclass(frozen=True)
class LowScore:
    """An answer of 1 or 2 whose follow-up issue is not recorded yet."""

    survey_id: str
    engagement_url: str
    engagement_title: str
    account: str
    project_manager: str
    closed_at: str
    score: int
    comment: str
    responded_at: str
    interrupted: bool  # an earlier attempt may have created the issue before it was recorded


def _mail(row: dict[str, Any]) -> SurveyMail:
    return SurveyMail(
        str(row["survey_id"]),
        str(row["engagement_url"]),
        str(row["engagement_title"]),
        str(row.get("engagement_name") or ""),
        str(row["contact_name"] or ""),
        str(row["email"]),
        str(row.get("reply_to") or ""),
    )


class SurveyLedger:
    """Surveys of ``ps_csat_surveys``: who was asked for which engagement, what went out, what is stuck."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    # --- who may be asked ---------------------------------------------------------------------------
    def surveyed_between(self, after: str, before: str) -> set[str]:
        """E-mail addresses surveyed with a window end strictly between ``after`` and ``before``."""
        rows = self.store.fetch_all("csat/surveyed_near", {"after": after, "before": before})
        return {str(row["email"]) for row in rows}

    def opted_out(self) -> set[str]:
        return {str(row["email"]) for row in self.store.fetch_all("csat/optouts")}

    def contacts_surveyed_for(self, engagement_url: str) -> set[str]:
        rows = self.store.fetch_all("csat/contacts_of_engagement", {"engagement_url": engagement_url})
        return {str(row["contact_id"]) for row in rows}

    def add(self, survey: NewSurvey) -> str:
        """Record a survey to send (once per engagement and contact, ever); its new id."""
        survey_id = secrets.token_hex(16)
        self.store.execute("csat/add_survey", {**asdict(survey), "survey_id": survey_id, "run_id": self.run_id})
        return survey_id

    # --- surveys ----------------------------------------------------------------------------------------
    def pending(self) -> list[SurveyMail]:
        return [_mail(row) for row in self.store.fetch_all("csat/by_status", {"status": "pending"})]

    def claim(self, survey_id: str) -> bool:
        """Mark the survey "sending" before the SMTP call (False: another run has it)."""
        return bool(self.store.execute("csat/claim", {"survey_id": survey_id}))

    def release(self, survey_id: str) -> bool:
        """An interrupted or refused send may go out once more."""
        return bool(self.store.execute("csat/release", {"survey_id": survey_id}))

    def mark_sent(self, survey_id: str) -> None:
        self.store.execute("csat/mark_sent", {"survey_id": survey_id, "sent_at": clock.now_iso()})

    # --- reminders --------------------------------------------------------------------------------------
    def reminders_due(self, window_before: str) -> list[SurveyMail]:
        """Sent surveys without answer, opt-out or reminder whose window ended by ``window_before``."""
        return [_mail(row) for row in self.store.fetch_all("csat/reminders_due", {"due_before": window_before})]

    def claim_reminder(self, survey_id: str) -> bool:
        return bool(self.store.execute("csat/claim_reminder", {"survey_id": survey_id}))

    def release_reminder(self, survey_id: str) -> bool:
        return bool(self.store.execute("csat/release_reminder", {"survey_id": survey_id}))

    def mark_reminder_sent(self, survey_id: str) -> None:
        self.store.execute("csat/mark_reminder_sent", {"survey_id": survey_id, "sent_at": clock.now_iso()})

    # --- interrupted sends --------------------------------------------------------------------------------
    def interrupted_sends(self) -> list[str]:
        """Surveys and reminders left "sending" by a process that died during the SMTP call."""
        stuck = [str(row["survey_id"]) for row in self.store.fetch_all("csat/by_status", {"status": "sending"})]
        return stuck + [str(row["survey_id"]) for row in self.store.fetch_all("csat/stuck_reminders")]

    # --- follow-up issues ---------------------------------------------------------------------------------
    def low_scores_without_followup(self) -> list[LowScore]:
        return [
            LowScore(
                str(row["survey_id"]),
                str(row["engagement_url"]),
                str(row["engagement_title"]),
                str(row["account"] or ""),
                str(row["project_manager"] or ""),
                str(row["closed_at"]),
                int(row["score"]),
                str(row["comment"] or ""),
                str(row["responded_at"]),
                row["followup_status"] == FOLLOWUP_CREATING,
            )
            for row in self.store.fetch_all("csat/followups_due")
        ]

    def followup_creating(self, survey_id: str) -> None:
        """Recorded before the issue is created: a crash after it is found by the marker next time."""
        self.store.execute("csat/set_followup", {"survey_id": survey_id, "status": FOLLOWUP_CREATING, "url": ""})

    def followup_created(self, survey_id: str, url: str) -> None:
        self.store.execute("csat/set_followup", {"survey_id": survey_id, "status": FOLLOWUP_CREATED, "url": url})

    # --- audit ----------------------------------------------------------------------------------------------
    def audit(self, survey_id: str, action: str, detail: str) -> None:
        self.store.execute(
            "platform/record_audit",
            {
                "dag_id": SURVEYS_JOB,
                "run_id": self.run_id,
                "record_id": survey_id,
                "action": action,
                "detail": detail,
                "recorded_at": clock.now_iso(),
            },
        )


@dataclass(frozen=True)
class LatestReport:
    """The newest quarter's summary, shown on the "PS CSAT" page."""

    period: str
    html: str
    png_base64: str


class CsatResults:
    """Surveys and their answers for ``ps_csat_summary``, and the report kept for the "PS CSAT" page."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def outcomes(self) -> list[SurveyOutcome]:
        """Every survey that was sent, with its answer if there is one."""
        return [
            SurveyOutcome(
                str(row["survey_id"]),
                date.fromisoformat(str(row["closed_at"])[:10]),
                str(row["engagement_title"]),
                str(row["engagement_url"]),
                str(row["engagement_type"] or ""),
                str(row["sku_category"] or ""),
                str(row["project_manager"] or ""),
                str(row["account"] or ""),
                int(row["score"]) if row["score"] is not None else None,
                str(row["comment"] or ""),
                str(row["updated_at"] or ""),
                str(row.get("engagement_name") or ""),
                str(row.get("followup_issue_url") or ""),
            )
            for row in self.store.fetch_all("csat/responses")
        ]

    def keep_latest(self, report: LatestReport) -> None:
        """Keep ``report`` for the page unless a newer quarter is kept (an older one rebuilt on demand)."""
        latest = self.store.get_value(SUMMARY_JOB, "latest:period")
        if latest and latest > report.period:
            return
        self.store.set_value(SUMMARY_JOB, "latest:html", report.html)
        self.store.set_value(SUMMARY_JOB, "latest:png", report.png_base64)
        self.store.set_value(SUMMARY_JOB, "latest:period", report.period)

    def latest(self) -> LatestReport | None:
        period = self.store.get_value(SUMMARY_JOB, "latest:period")
        if not period:
            return None
        html = self.store.get_value(SUMMARY_JOB, "latest:html") or ""
        return LatestReport(period, html, self.store.get_value(SUMMARY_JOB, "latest:png") or "")


@dataclass(frozen=True)
class SurveyAnswer:
    """A survey as the response service shows it, with its current answer (score None: none yet)."""

    survey_id: str
    engagement_title: str
    engagement_name: str
    company: str
    score: int | None
    comment: str
    version: int  # 0 before the first answer; a form may change the answer of its own version only

    @property
    def team(self) -> str:
        company = self.company.strip()
        return f"{company} Professional Services" if company else "Professional Services"

    @property
    def engagement(self) -> str:
        return self.engagement_name or self.engagement_title


class SurveyAnswers:
    """What the response service reads and writes: the ``csat_*`` tables only."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def survey(self, survey_id: str) -> SurveyAnswer | None:
        row = self.store.fetch_one("csat/service_survey", {"survey_id": survey_id})
        if row is None:
            return None
        return SurveyAnswer(
            str(row["survey_id"]),
            str(row["engagement_title"] or ""),
            str(row["engagement_name"] or ""),
            str(row["company"] or ""),
            int(row["score"]) if row["score"] is not None else None,
            str(row["comment"] or ""),
            int(row["version"] or 0),
        )

    def record(self, survey_id: str, version: int, score: int, comment: str) -> bool:
        """Record the answer of a form made from answer ``version``; False when that is not the current one."""
        params = {"survey_id": survey_id, "score": score, "comment": comment, "now": clock.now_iso()}
        if version == 0:
            return bool(self.store.execute("csat/service_first_answer", params))
        return bool(self.store.execute("csat/service_change_answer", {**params, "version": version}))

    def opt_out(self, survey_id: str, source: str) -> None:
        self.store.execute("csat/service_opt_out", {"survey_id": survey_id, "now": clock.now_iso(), "source": source})
