"""CSAT summaries for PS leadership (issue #10): one fiscal quarter's CSAT %, response rate and
score counts, broken down by engagement type, SKU category, project manager and account, with the
trend over 8 quarters, verbatims, a chart, and a mail - at most one per version of the report.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from ps_integrations.domain.csat import (
    DIMENSIONS,
    LOW_RESPONSE_COUNT,
    CsatFigures,
    QuarterFigures,
    SurveyOutcome,
    fiscal_quarter_key,
    quarter_figures,
)
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.exports import Column, ExportFile, csv_file, json_file
from ps_integrations.jobs.csat_summary.mail import leadership_message
from ps_integrations.jobs.csat_summary.report import pct_text, summary_html, trend_chart
from ps_integrations.run_summary import RunSummary
from ps_integrations.stores.csat import LatestReport
from ps_integrations.stores.sent_mail import MailState

log = logging.getLogger(__name__)

JOB = "ps_csat_summary"
CONFIG_VARIABLE = "ps_csat_summary_config"
BY_DIMENSION_COLUMNS = (
    Column(
        "dimension", "fiscal_quarter (the 8-quarter trend), engagement_type, sku_category, project_manager, account"
    ),
    Column("value", "The quarter or the dimension's value"),
    Column("surveys", "Surveys sent"),
    Column("responses", "Surveys answered"),
    Column("satisfied", "Answers scoring 4 or 5"),
    Column("csat_pct", "satisfied / responses, percent (empty without responses)"),
    Column("response_rate_pct", "responses / surveys, percent"),
    Column("few_responses", f"true when fewer than {LOW_RESPONSE_COUNT} responses back the percentage"),
    *(Column(f"score_{score}", f"Answers scoring {score}") for score in range(1, 6)),
)
RESPONSE_COLUMNS = (
    Column("survey_id", "Survey id (no customer e-mail addresses in this file)"),
    Column("closed_on", "Date the engagement closed"),
    Column("fiscal_quarter", "Fiscal quarter of the close"),
    Column("account", "Customer account"),
    Column("engagement", "Engagement title (internal, GitLab)"),
    Column("engagement_name", "The engagement's name as the customer knows it (used in the survey mail)"),
    Column("engagement_url", "Engagement issue URL"),
    Column("engagement_type", "Engagement type"),
    Column("sku_category", "Category of the deal's main SKU"),
    Column("project_manager", "Project manager (engagement issue assignee at close)"),
    Column("score", "1-5, empty when not answered"),
    Column("comment", "The customer's comment, as written"),
    Column("responded_at", "When the answer was last given, ISO 8601 UTC"),
    Column("follow_up_issue", "GitLab follow-up issue of a score of 1 or 2 (empty otherwise)"),
)


@dataclass(frozen=True)
class SummaryConfig:
    fiscal_year_start_month: int = 2
    leadership_recipients: str = "ps-leadership@example.com"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SummaryConfig:
        from ps_integrations.settings import settings_from_mapping

        return settings_from_mapping(cls, data, CONFIG_VARIABLE)


# --- what the job needs (the DAG wires the state store's repositories and the export store) -----------
class SurveyResults(Protocol):
    def outcomes(self) -> list[SurveyOutcome]: ...

    def keep_latest(self, report: LatestReport) -> None: ...


class ExportFolders(Protocol):
    def write_folder(self, folder: str, title: str, files: Sequence[ExportFile]) -> list[str]: ...


class MailLedger(Protocol):
    def send_once(self, key: str, version: str, send: Callable[[], None]) -> MailState: ...


SendMail = Callable[[EmailMessage], None]


if TYPE_CHECKING:  # mypy checks that the collaborators the DAG wires fit these ports (never run)
    from ps_integrations.exports import ExportStore
    from ps_integrations.mail import send_message
    from ps_integrations.stores.csat import CsatResults
    from ps_integrations.stores.sent_mail import SentMailLedger

    def _wired(
        results: CsatResults, exports: ExportStore, ledger: SentMailLedger
    ) -> tuple[SurveyResults, ExportFolders, MailLedger, SendMail]:
        return results, exports, ledger, send_message


@dataclass(frozen=True)
class SummaryFiles:
    report: ExportFile  # summary.html
    chart: ExportFile  # trend.png
    by_dimension: ExportFile  # csat_by_dimension.csv
    responses: ExportFile
    manifest: ExportFile  # its sha256 is the version of the report (the mail goes out once per version)


def figure_row(dimension: str, value: str, figures: CsatFigures) -> dict[str, Any]:
    return {
        "dimension": dimension,
        "value": value,
        "surveys": figures.surveys,
        "responses": figures.responses,
        "satisfied": figures.satisfied,
        "csat_pct": figures.csat_pct,
        "response_rate_pct": figures.response_rate_pct,
        "few_responses": figures.responses < LOW_RESPONSE_COUNT,
        **{f"score_{score}": figures.score_counts[score] for score in range(1, 6)},
    }


def response_row(outcome: SurveyOutcome, period: str) -> dict[str, Any]:
    return {
        "survey_id": outcome.survey_id,
        "closed_on": outcome.closed_on,
        "fiscal_quarter": period,
        "account": outcome.account,
        "engagement": outcome.engagement_title,
        "engagement_name": outcome.engagement_name,
        "engagement_url": outcome.engagement_url,
        "engagement_type": outcome.engagement_type,
        "sku_category": outcome.sku_category,
        "project_manager": outcome.project_manager,
        "score": outcome.score,
        "comment": outcome.comment,
        "responded_at": outcome.responded_at,
        "follow_up_issue": outcome.followup_url,
    }


def summary_files(quarter: QuarterFigures) -> SummaryFiles:
    """The export of a quarter; the same figures give the same bytes."""
    chart = trend_chart(quarter.trend)
    report = summary_html(quarter, "data:image/png;base64," + base64.b64encode(chart).decode("ascii"))
    dimension_rows = [figure_row("fiscal_quarter", key, figures) for key, figures in quarter.trend] + [
        figure_row(name, value, figures) for name, _ in DIMENSIONS for value, figures in quarter.tables[name]
    ]
    files = [
        ExportFile("summary.html", report.encode("utf-8"), "The report: CSAT, breakdowns, trend and verbatims."),
        ExportFile("trend.png", chart, "CSAT % per fiscal quarter (8 quarters) with response counts."),
        csv_file(
            "csat_by_dimension.csv",
            "CSAT figures per quarter and per dimension value.",
            BY_DIMENSION_COLUMNS,
            dimension_rows,
        ),
        csv_file(
            "responses.csv",
            "Every survey of the quarter and its answer.",
            RESPONSE_COLUMNS,
            [response_row(outcome, quarter.period) for outcome in quarter.surveys],
        ),
    ]
    manifest = json_file(
        "manifest.json",
        "Counts and sha256 of each file.",
        {
            "period": quarter.period,
            "surveys": quarter.overall.surveys,
            "responses": quarter.overall.responses,
            "files": {f.name: {"sha256": f.sha256, "bytes": len(f.content)} for f in files},
        },
    )
    return SummaryFiles(files[0], files[1], files[2], files[3], manifest)


class CsatSummary:
    def __init__(
        self,
        results: SurveyResults,
        exports: ExportFolders,
        mails: MailLedger,
        config: SummaryConfig,
        send: SendMail,
    ) -> None:
        self.results, self.exports, self.mails, self.config, self.send = results, exports, mails, config, send
        self.summary = RunSummary(counts={"surveys": 0, "responses": 0, "mails sent": 0})

    def run(self, period: str) -> RunSummary:
        quarter = quarter_figures(self.results.outcomes(), period, self.config.fiscal_year_start_month)
        files = summary_files(quarter)
        self.export(quarter, files)
        self.keep_for_the_page(quarter, files)
        self.mail_leadership(quarter, files)
        return self.summary

    def export(self, quarter: QuarterFigures, files: SummaryFiles) -> None:
        written = self.exports.write_folder(
            f"csat/{quarter.period}",
            f"PS CSAT summary, {quarter.period}",
            [files.report, files.chart, files.by_dimension, files.responses, files.manifest],
        )
        self.summary.add("surveys", quarter.overall.surveys)
        self.summary.add("responses", quarter.overall.responses)
        self.summary.note(
            f"{quarter.period}: CSAT {pct_text(quarter.overall)}; last 8 quarters: CSAT {pct_text(quarter.last_8)}"
        )
        self.summary.note(f"export {written[0].rsplit('/', 1)[0]}")

    def keep_for_the_page(self, quarter: QuarterFigures, files: SummaryFiles) -> None:
        """The newest quarter's report for the "PS CSAT" page in the Airflow UI."""
        png = base64.b64encode(files.chart.content).decode("ascii")
        self.results.keep_latest(LatestReport(quarter.period, files.report.content.decode("utf-8"), png))

    def mail_leadership(self, quarter: QuarterFigures, files: SummaryFiles) -> None:
        """Once per version of the report; a send cut short by a kill is named, never repeated."""
        recipients = self.config.leadership_recipients
        if not recipients:
            self.summary.note("no leadership_recipients configured: no mail sent")
            return

        def send() -> None:
            self.send(leadership_message(quarter, files.chart.content, files.by_dimension, recipients))

        state = self.mails.send_once(f"mail:{quarter.period}", files.manifest.sha256, send)
        if state is MailState.SENT:
            self.summary.add("mails sent")
        elif state is MailState.ALREADY_SENT:
            self.summary.note("leadership already mailed this version of the summary")
        else:
            self.summary.note(
                f"leadership mail {quarter.period} interrupted: an earlier try died during the send, so it may "
                "or may not have reached leadership; not resent - check the leadership mailbox"
            )


def period_of_run(period: str | None, interval_end: datetime | None, now: datetime, start_month: int) -> str:
    """The fiscal quarter to summarise: the param, else the quarter of the interval's last day."""
    if period:
        if not re.fullmatch(r"FY\d{4}-Q[1-4]", period):
            raise ConfigurationError(f"param period {period!r} is not a fiscal quarter like FY2027-Q3")
        return period
    last_day = ((interval_end or now) - timedelta(seconds=1)).date()
    return fiscal_quarter_key(last_day, start_month)
