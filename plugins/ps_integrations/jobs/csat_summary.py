"""CSAT summaries for PS leadership (issue #10): one fiscal quarter's CSAT %, response rate and
score counts, broken down by engagement type, SKU category, project manager and account, with the
trend over 8 quarters, verbatims, a chart, and a mail.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from typing import Any

from ps_integrations.domain.csat import (
    LOW_RESPONSE_COUNT,
    CsatFigures,
    SurveyOutcome,
    breakdown,
    figures_of,
    fiscal_quarter_key,
    previous_quarters,
)
from ps_integrations.exports import Column, ExportFile, csv_file, json_file
from ps_integrations.run_summary import RunSummary

log = logging.getLogger(__name__)

JOB = "ps_csat_summary"
DIMENSIONS = (
    ("engagement_type", "Engagement type"),
    ("sku_category", "SKU category"),
    ("project_manager", "Project manager"),
    ("account", "Account"),
)
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
    Column("engagement", "Engagement title"),
    Column("engagement_url", "Engagement issue URL"),
    Column("engagement_type", "Engagement type"),
    Column("sku_category", "Category of the deal's main SKU"),
    Column("project_manager", "Project manager (engagement issue assignee at close)"),
    Column("score", "1-5, empty when not answered"),
    Column("comment", "The customer's comment, as written"),
    Column("responded_at", "When the answer was last given, ISO 8601 UTC"),
)


@dataclass(frozen=True)
class SummaryConfig:
    fiscal_year_start_month: int = 2
    leadership_recipients: str = "ps-leadership@example.com"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SummaryConfig:
        from ps_integrations.settings import settings_from_mapping

        return settings_from_mapping(cls, data, "ps_csat_summary_config")


def outcomes_from_rows(rows: list[dict[str, Any]]) -> list[SurveyOutcome]:
    return [
        SurveyOutcome(
            row["survey_id"],
            date.fromisoformat(str(row["closed_at"])[:10]),
            row["engagement_title"],
            row["engagement_url"],
            row["engagement_type"],
            row["sku_category"],
            row["project_manager"],
            row["account"],
            int(row["score"]) if row["score"] is not None else None,
            row["comment"] or "",
            row["updated_at"] or "",
        )
        for row in rows
    ]


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


def trend_chart(trend: list[tuple[str, CsatFigures]]) -> bytes:
    """CSAT % per quarter with the response count on each bar (PNG, same bytes for the same data)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 3.6), dpi=100)
    labels = [key for key, _ in trend]
    values = [figures.csat_pct or 0 for _, figures in trend]
    bars = axes.bar(
        labels, values, color=["#6b4fbb" if f.responses >= LOW_RESPONSE_COUNT else "#c3b6e6" for _, f in trend]
    )
    for bar, (_, figures) in zip(bars, trend, strict=True):
        text = f"{figures.csat_pct:.0f}%\nn={figures.responses}" if figures.responses else "n=0"
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    axes.set_ylim(0, 119)
    axes.set_ylabel("CSAT % (4 or 5)")
    axes.set_title("CSAT by fiscal quarter (light bars: fewer than 5 responses)")
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    pyplot.close(figure)
    return buffer.getvalue()


def _pct(figures: CsatFigures) -> str:
    if figures.csat_pct is None:
        return f"- (n={figures.responses})"
    few = " (few responses)" if figures.responses < LOW_RESPONSE_COUNT else ""
    return f"{figures.csat_pct:.1f}% (n={figures.responses}){few}"


def summary_html(
    period: str,
    overall: CsatFigures,
    trend: list[tuple[str, CsatFigures]],
    tables: dict[str, Any],
    verbatims: list[SurveyOutcome],
    image_src: str,
) -> str:
    """A self-contained report (inline styles, the chart from ``image_src``); every value escaped."""
    esc = html.escape

    def table(title: str, rows: list[tuple[str, CsatFigures]]) -> str:
        body = (
            "".join(
                f"<tr><td>{esc(value)}</td><td align='right'>{_pct(figures)}</td>"
                f"<td align='right'>{figures.responses}/{figures.surveys}</td></tr>"
                for value, figures in rows
            )
            or "<tr><td colspan='3'>No surveys</td></tr>"
        )
        return (
            f"<h3 style='margin:18px 0 6px'>{esc(title)}</h3>"
            "<table cellpadding='4' style='border-collapse:collapse;font-size:13px' border='1'>"
            f"<tr><th align='left'>{esc(title)}</th><th>CSAT</th><th>Answered</th></tr>{body}</table>"
        )

    verbatim_rows = (
        "".join(
            f"<tr><td>{esc(o.responded_at[:10])}</td><td align='center'>{o.score}</td>"
            f"<td>{esc(o.engagement_title)}</td><td>{esc(o.comment)}</td></tr>"
            for o in verbatims
        )
        or "<tr><td colspan='4'>No comments this quarter</td></tr>"
    )
    counts = ", ".join(f"{score}: {overall.score_counts[score]}" for score in range(1, 6))
    rate = "-" if overall.response_rate_pct is None else f"{overall.response_rate_pct:.1f}%"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>PS CSAT {esc(period)}</title></head>"
        "<body style='font-family:Arial,Helvetica,sans-serif;color:#222;max-width:820px'>"
        f"<h2>PS customer satisfaction, {esc(period)}</h2>"
        f"<p><b>CSAT {_pct(overall)}</b> - response rate {rate} ({overall.responses} of {overall.surveys} surveys "
        f"answered). Scores: {counts}. CSAT counts answers of 4 or 5.</p>"
        f"<img src='{image_src}' alt='CSAT by fiscal quarter' width='800' height='360'>"
        + table("Fiscal quarter (trend)", trend)
        + "".join(table(title, tables[name]) for name, title in DIMENSIONS)
        + "<h3 style='margin:18px 0 6px'>Verbatims (newest first)</h3>"
        "<table cellpadding='4' style='border-collapse:collapse;font-size:13px' border='1'>"
        f"<tr><th>Date</th><th>Score</th><th>Engagement</th><th>Comment</th></tr>{verbatim_rows}</table>"
        "</body></html>"
    )


class CsatSummary:
    def __init__(self, store: Any, exports: Any, config: SummaryConfig, send: Any) -> None:
        self.store, self.exports, self.config, self.send = store, exports, config, send
        self.summary = RunSummary(counts={"surveys": 0, "responses": 0, "mails sent": 0})

    def run(self, period: str) -> RunSummary:
        outcomes = outcomes_from_rows(self.store.fetch_all("csat/responses"))
        start_month = self.config.fiscal_year_start_month
        quarter_of = {o.survey_id: fiscal_quarter_key(o.closed_on, start_month) for o in outcomes}
        in_period = [o for o in outcomes if quarter_of[o.survey_id] == period]
        overall = figures_of(in_period)
        trend = [
            (key, figures_of([o for o in outcomes if quarter_of[o.survey_id] == key]))
            for key in previous_quarters(period, 8)
        ]
        tables = {name: breakdown(in_period, name) for name, _ in DIMENSIONS}
        answered = sorted(
            (o for o in in_period if o.score is not None), key=lambda o: (o.responded_at, o.survey_id), reverse=True
        )
        verbatims = [o for o in answered if o.comment]
        chart = trend_chart(trend)
        dimension_rows = [figure_row("fiscal_quarter", key, figures) for key, figures in trend] + [
            figure_row(name, value, figures) for name, _ in DIMENSIONS for value, figures in tables[name]
        ]
        response_rows = [
            {
                "survey_id": o.survey_id,
                "closed_on": o.closed_on,
                "fiscal_quarter": period,
                "account": o.account,
                "engagement": o.engagement_title,
                "engagement_url": o.engagement_url,
                "engagement_type": o.engagement_type,
                "sku_category": o.sku_category,
                "project_manager": o.project_manager,
                "score": o.score,
                "comment": o.comment,
                "responded_at": o.responded_at,
            }
            for o in sorted(in_period, key=lambda o: (o.closed_on, o.survey_id))
        ]
        data_uri = "data:image/png;base64," + base64.b64encode(chart).decode("ascii")
        report = summary_html(period, overall, trend, tables, verbatims, data_uri)
        files = [
            ExportFile("summary.html", report.encode("utf-8"), "The report: CSAT, breakdowns, trend and verbatims."),
            ExportFile("trend.png", chart, "CSAT % per fiscal quarter (8 quarters) with response counts."),
            csv_file(
                "csat_by_dimension.csv",
                "CSAT figures per quarter and per dimension value.",
                BY_DIMENSION_COLUMNS,
                dimension_rows,
            ),
            csv_file("responses.csv", "Every survey of the quarter and its answer.", RESPONSE_COLUMNS, response_rows),
        ]
        manifest = json_file(
            "manifest.json",
            "Counts and sha256 of each file.",
            {
                "period": period,
                "surveys": overall.surveys,
                "responses": overall.responses,
                "files": {f.name: {"sha256": f.sha256, "bytes": len(f.content)} for f in files},
            },
        )
        folder = f"csat/{period}"
        paths = self.exports.write_folder(folder, f"PS CSAT summary, {period}", [*files, manifest])
        self.summary.add("surveys", overall.surveys)
        self.summary.add("responses", overall.responses)
        last_8 = figures_of([o for o in outcomes if quarter_of[o.survey_id] in {key for key, _ in trend}])
        self.summary.note(f"{period}: CSAT {_pct(overall)}; last 8 quarters: CSAT {_pct(last_8)}")
        self.summary.note(f"export {paths[0].rsplit('/', 1)[0]}")
        self._keep_latest(period, report, chart)
        self._mail(period, overall, trend, tables, verbatims, chart, files[2], manifest.sha256)
        return self.summary

    def _keep_latest(self, period: str, report: str, chart: bytes) -> None:
        """The newest quarter's report for the "PS CSAT" page in the Airflow UI."""
        latest = self.store.get_value(JOB, "latest:period")
        if latest and latest > period:  # an older quarter rebuilt on demand does not replace the page
            return
        self.store.set_value(JOB, "latest:html", report)
        self.store.set_value(JOB, "latest:png", base64.b64encode(chart).decode("ascii"))
        self.store.set_value(JOB, "latest:period", period)

    def _mail(
        self,
        period: str,
        overall: CsatFigures,
        trend: list[tuple[str, CsatFigures]],
        tables: dict[str, Any],
        verbatims: list[SurveyOutcome],
        chart: bytes,
        by_dimension: ExportFile,
        digest: str,
    ) -> None:
        key = f"mail:{period}"
        if self.store.get_value(JOB, key) == digest:
            self.summary.note("leadership already mailed this version of the summary")
            return
        if not self.config.leadership_recipients:
            self.summary.note("no leadership_recipients configured: no mail sent")
            return
        image_id = make_msgid(idstring="csat-trend")
        message = EmailMessage(policy=SMTP_POLICY)
        message["Subject"] = f"[ps-integrations] PS CSAT {period}: {_pct(overall)}"
        message["To"] = self.config.leadership_recipients
        message.set_content(
            f"PS customer satisfaction {period}: CSAT {_pct(overall)}, {overall.responses} of {overall.surveys} "
            "surveys answered. The full report is in the HTML part and the attached CSV."
        )
        message.add_alternative(
            summary_html(period, overall, trend, tables, verbatims, f"cid:{image_id[1:-1]}"), subtype="html"
        )
        html_part = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(chart, maintype="image", subtype="png", cid=image_id, filename="trend.png")
        message.add_attachment(by_dimension.content, maintype="text", subtype="csv", filename=by_dimension.name)
        self.send(message)
        self.store.set_value(JOB, key, digest)
        self.summary.add("mails sent")


def period_of_run(period: str | None, interval_end: datetime | None, now: datetime, start_month: int) -> str:
    """The fiscal quarter to summarise: the param, else the quarter of the interval's last day."""
    from datetime import timedelta

    from ps_integrations.exceptions import ConfigurationError

    if period:
        if not re.fullmatch(r"FY\d{4}-Q[1-4]", period):
            raise ConfigurationError(f"param period {period!r} is not a fiscal quarter like FY2027-Q3")
        return period
    last_day = ((interval_end or now) - timedelta(seconds=1)).date()
    return fiscal_quarter_key(last_day, start_month)
