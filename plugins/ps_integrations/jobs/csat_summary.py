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
    fiscal_quarter_bounds,
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
            row.get("engagement_name") or "",
            row.get("followup_issue_url") or "",
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
    colours = [
        ("#4b2e9e" if index == len(trend) - 1 else "#8f7ad1") if f.responses >= LOW_RESPONSE_COUNT else "#d9d1f0"
        for index, (_, f) in enumerate(trend)
    ]
    bars = axes.bar(labels, values, color=colours)
    for bar, (_, figures) in zip(bars, trend, strict=True):
        text = f"{figures.csat_pct:.0f}%\nn={figures.responses}" if figures.responses else "n=0"
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    axes.set_ylim(0, 119)
    axes.set_yticks([0, 25, 50, 75, 100])
    axes.set_ylabel("CSAT % (answers of 4 or 5)")
    axes.set_title("CSAT by fiscal quarter (dark: this quarter; pale: fewer than 5 answers)", fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(axis="x", labelsize=8)
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


def change_text(current: CsatFigures, previous: CsatFigures, previous_key: str) -> str:
    """``up 3.1 points on FY2027-Q3 (85.1%, n=75)``; plain words when either side has no answers."""
    if previous.csat_pct is None:
        return f"no answers in {previous_key} to compare with"
    if current.csat_pct is None:
        return f"{previous_key} had {previous.csat_pct:.1f}% (n={previous.responses})"
    delta = round(current.csat_pct - previous.csat_pct, 1)
    direction = "level with" if delta == 0 else f"{'up' if delta > 0 else 'down'} {abs(delta):.1f} points on"
    few = ", few responses" if previous.responses < LOW_RESPONSE_COUNT else ""
    return f"{direction} {previous_key} ({previous.csat_pct:.1f}%, n={previous.responses}{few})"


def headline(period: str, overall: CsatFigures, trend: list[tuple[str, CsatFigures]]) -> str:
    """One line a VP can forward: the quarter's CSAT, its n and the change on the quarter before."""
    previous_key, previous = trend[-2] if len(trend) > 1 else (period, overall)
    return f"{period}: CSAT {_pct(overall)}, {change_text(overall, previous, previous_key)}"


def extremes(tables: dict[str, list[tuple[str, CsatFigures]]]) -> tuple[str, str] | None:
    """The best and the weakest breakdown value backed by at least 5 answers (None without any)."""
    solid = [
        (figures.csat_pct, title, value, figures)
        for name, title in DIMENSIONS
        for value, figures in tables[name]
        if figures.csat_pct is not None and figures.responses >= LOW_RESPONSE_COUNT
    ]
    if len(solid) < 2:
        return None
    best = max(solid, key=lambda item: (item[0], item[3].responses))
    worst = min(solid, key=lambda item: (item[0], -item[3].responses))
    return (f"{best[1]} {best[2]}: {_pct(best[3])}", f"{worst[1]} {worst[2]}: {_pct(worst[3])}")


TABLE = "border-collapse:collapse;font-size:13px;margin:4px 0 12px"
BREAKDOWN_ROWS = 12  # the report shows the values with the most answers; the CSV has every value
CELL = "padding:4px 10px;border-bottom:1px solid #e4e0f0"
HEAD = "padding:4px 10px;border-bottom:2px solid #6b4fbb;text-align:left;color:#4b2e9e"


def summary_html(
    period: str,
    overall: CsatFigures,
    trend: list[tuple[str, CsatFigures]],
    tables: dict[str, Any],
    verbatims: list[SurveyOutcome],
    image_src: str,
    low_scores: list[SurveyOutcome] | None = None,
    quarter_dates: tuple[date, date] | None = None,
    last_8: CsatFigures | None = None,
) -> str:
    """A self-contained report (inline styles, the chart from ``image_src``); every value escaped.

    Reads top-down as a VP would forward it: headline with the change on the last quarter, key
    points, the 8-quarter trend, breakdowns, low scores with their follow-up issues, verbatims.
    """
    esc = html.escape
    low_scores = low_scores or []

    def table(title: str, rows: list[tuple[str, CsatFigures]], sort: bool = True, limit: int | None = None) -> str:
        ordered = sorted(rows, key=lambda row: (-row[1].responses, row[0])) if sort else rows
        more = ordered[limit:] if limit is not None else []
        ordered = ordered[:limit] if limit is not None else ordered
        body = (
            "".join(
                f"<tr><td style='{CELL}'>{esc(value)}</td><td style='{CELL};text-align:right'>{_pct(figures)}</td>"
                f"<td style='{CELL};text-align:right'>{figures.responses}/{figures.surveys}</td>"
                f"<td style='{CELL};text-align:right'>"
                f"{'-' if figures.response_rate_pct is None else f'{figures.response_rate_pct:.0f}%'}</td></tr>"
                for value, figures in ordered
            )
            or f"<tr><td colspan='4' style='{CELL}'>No surveys</td></tr>"
        )
        if more:
            answered = sum(figures.responses for _, figures in more)
            body += (
                f"<tr><td colspan='4' style='{CELL};color:#777'>and {len(more)} more with {answered} answer(s) "
                "in all: every value is in csat_by_dimension.csv</td></tr>"
            )
        return (
            f"<h3 style='margin:18px 0 4px'>{esc(title)}</h3><table style='{TABLE}'>"
            f"<tr><th style='{HEAD}'>{esc(title)}</th><th style='{HEAD}'>CSAT</th>"
            f"<th style='{HEAD}'>Answered / sent</th><th style='{HEAD}'>Response rate</th></tr>{body}</table>"
        )

    def who(outcome: SurveyOutcome) -> str:
        return esc(outcome.engagement_name or outcome.engagement_title)

    counts = ", ".join(f"{score}: {overall.score_counts[score]}" for score in range(5, 0, -1))
    rate = "-" if overall.response_rate_pct is None else f"{overall.response_rate_pct:.0f}%"
    previous_key, previous = trend[-2] if len(trend) > 1 else (period, overall)
    dates = f" ({quarter_dates[0]:%d %b %Y} - {quarter_dates[1]:%d %b %Y})" if quarter_dates else ""
    points = [
        f"Response rate {rate}: {overall.responses} of {overall.surveys} surveys answered. Scores {counts}.",
    ]
    if last_8 is not None:
        points.append(f"Last 8 quarters: CSAT {_pct(last_8)}.")
    if (found := extremes(tables)) is not None:
        points.append(f"Strongest: {esc(found[0])}. Weakest: {esc(found[1])}.")
    open_followups = sum(1 for o in low_scores if o.followup_url)
    if low_scores:
        points.append(
            f"{len(low_scores)} low score(s) (1 or 2); {open_followups} with a follow-up issue for the project "
            "manager (listed below)."
        )
    else:
        points.append("No low scores (1 or 2) this quarter.")
    key_points = "".join(f"<li>{point}</li>" for point in points)

    followup_rows = (
        "".join(
            f"<tr><td style='{CELL}'>{esc(o.responded_at[:10])}</td><td style='{CELL};text-align:center'>{o.score}</td>"
            f"<td style='{CELL}'>{who(o)}</td><td style='{CELL}'>{esc(o.project_manager)}</td>"
            f"<td style='{CELL}'>"
            + (
                f"<a href='{esc(o.followup_url)}'>issue #{esc(o.followup_url.rsplit('/', 1)[-1])}</a>"
                if o.followup_url
                else "not raised yet"
            )
            + "</td></tr>"
            for o in low_scores
        )
        or f"<tr><td colspan='5' style='{CELL}'>No low scores this quarter</td></tr>"
    )
    verbatim_rows = (
        "".join(
            f"<tr><td style='{CELL};white-space:nowrap'>{esc(o.responded_at[:10])}</td>"
            f"<td style='{CELL};text-align:center'>{o.score}</td>"
            f"<td style='{CELL}'>{who(o)}<br><span style='color:#777'>{esc(o.engagement_type)}, "
            f"PM {esc(o.project_manager)}</span></td><td style='{CELL}'>{esc(o.comment)}</td></tr>"
            for o in verbatims
        )
        or f"<tr><td colspan='4' style='{CELL}'>No comments this quarter</td></tr>"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>PS CSAT {esc(period)}</title></head>"
        "<body style='font-family:Arial,Helvetica,sans-serif;color:#222;max-width:860px;"
        "margin:16px auto;padding:0 12px'>"
        f"<h2 style='margin-bottom:2px'>PS customer satisfaction, {esc(period)}</h2>"
        f"<div style='color:#666;font-size:13px'>Fiscal quarter{esc(dates)}; engagements that closed in it</div>"
        f"<p id='headline' style='font-size:20px;margin:14px 0 6px'><b>CSAT {_pct(overall)}</b>"
        f" - {esc(change_text(overall, previous, previous_key))}</p>"
        f"<ul style='margin:6px 0 14px;padding-left:20px;line-height:1.5'>{key_points}</ul>"
        f"<img src='{image_src}' alt='CSAT by fiscal quarter' width='800' height='360'>"
        + table("Fiscal quarter (trend)", trend, sort=False)
        + "".join(table(title, tables[name], limit=BREAKDOWN_ROWS) for name, title in DIMENSIONS)
        + "<h3 style='margin:18px 0 4px'>Low scores and their follow-up issues</h3>"
        f"<table style='{TABLE}'><tr><th style='{HEAD}'>Answered</th><th style='{HEAD}'>Score</th>"
        f"<th style='{HEAD}'>Engagement</th><th style='{HEAD}'>Project manager</th>"
        f"<th style='{HEAD}'>Follow-up</th></tr>{followup_rows}</table>"
        "<h3 style='margin:18px 0 4px'>Verbatims (newest first)</h3>"
        f"<table style='{TABLE}'><tr><th style='{HEAD}'>Date</th><th style='{HEAD}'>Score</th>"
        f"<th style='{HEAD}'>Engagement</th><th style='{HEAD}'>Comment</th></tr>{verbatim_rows}</table>"
        "<p style='color:#777;font-size:12px'>CSAT = answers scoring 4 or 5 / all answers; response rate = answers /"
        " surveys sent. Every figure shows its n; fewer than 5 answers are marked, never hidden. Source: the"
        " ps_csat_surveys state database; files in the export folder.</p>"
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
        low_scores = [o for o in answered if o.score is not None and o.score <= 2]
        last_8 = figures_of([o for o in outcomes if quarter_of[o.survey_id] in {key for key, _ in trend}])
        extra: dict[str, Any] = {
            "low_scores": low_scores,
            "quarter_dates": fiscal_quarter_bounds(period, start_month),
            "last_8": last_8,
        }
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
                "engagement_name": o.engagement_name,
                "engagement_url": o.engagement_url,
                "engagement_type": o.engagement_type,
                "sku_category": o.sku_category,
                "project_manager": o.project_manager,
                "score": o.score,
                "comment": o.comment,
                "responded_at": o.responded_at,
                "follow_up_issue": o.followup_url,
            }
            for o in sorted(in_period, key=lambda o: (o.closed_on, o.survey_id))
        ]
        data_uri = "data:image/png;base64," + base64.b64encode(chart).decode("ascii")
        report = summary_html(period, overall, trend, tables, verbatims, data_uri, **extra)
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
        self.summary.note(f"{period}: CSAT {_pct(overall)}; last 8 quarters: CSAT {_pct(last_8)}")
        self.summary.note(f"export {paths[0].rsplit('/', 1)[0]}")
        self._keep_latest(period, report, chart)
        self._mail(period, overall, trend, tables, verbatims, chart, files[2], manifest.sha256, extra)
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
        extra: dict[str, Any],
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
        message["Subject"] = f"[ps-integrations] PS CSAT {headline(period, overall, trend)}"
        message["To"] = self.config.leadership_recipients
        lows = extra["low_scores"]
        lines = [
            f"PS customer satisfaction, {headline(period, overall, trend)}.",
            f"Response rate: {overall.responses} of {overall.surveys} surveys answered.",
            f"Last 8 quarters: CSAT {_pct(extra['last_8'])}.",
            f"Low scores (1 or 2): {len(lows)}"
            + "".join(
                f"\n  - {o.score}/5 {o.engagement_name or o.engagement_title}: "
                f"{o.followup_url or 'no follow-up issue yet'}"
                for o in lows
            ),
            "",
            "The full report (trend, breakdowns, verbatims) is in the HTML part; the figures are attached as CSV.",
        ]
        message.set_content("\n".join(lines) + "\n")
        message.add_alternative(
            summary_html(period, overall, trend, tables, verbatims, f"cid:{image_id[1:-1]}", **extra), subtype="html"
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
