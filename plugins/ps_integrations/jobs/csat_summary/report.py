"""The CSAT report of one fiscal quarter: the trend chart, the headline and the self-contained HTML page
that is exported, mailed and shown on the "PS CSAT" page. Pure rendering: figures come from
``domain.csat.quarter_figures``."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence

from ps_integrations.domain.csat import DIMENSIONS, LOW_RESPONSE_COUNT, CsatFigures, QuarterFigures, SurveyOutcome


def trend_chart(trend: Sequence[tuple[str, CsatFigures]]) -> bytes:
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


def pct_text(figures: CsatFigures) -> str:
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


def headline(period: str, overall: CsatFigures, trend: Sequence[tuple[str, CsatFigures]]) -> str:
    """One line a VP can forward: the quarter's CSAT, its n and the change on the quarter before."""
    previous_key, previous = trend[-2] if len(trend) > 1 else (period, overall)
    return f"{period}: CSAT {pct_text(overall)}, {change_text(overall, previous, previous_key)}"


def extremes(tables: Mapping[str, list[tuple[str, CsatFigures]]]) -> tuple[str, str] | None:
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
    return (f"{best[1]} {best[2]}: {pct_text(best[3])}", f"{worst[1]} {worst[2]}: {pct_text(worst[3])}")


TABLE = "border-collapse:collapse;font-size:13px;margin:4px 0 12px"
BREAKDOWN_ROWS = 12  # the report shows the values with the most answers; the CSV has every value
CELL = "padding:4px 10px;border-bottom:1px solid #e4e0f0"
HEAD = "padding:4px 10px;border-bottom:2px solid #6b4fbb;text-align:left;color:#4b2e9e"


def summary_html(quarter: QuarterFigures, image_src: str) -> str:
    """A self-contained report (inline styles, the chart from ``image_src``); every value escaped.

    Reads top-down as a VP would forward it: headline with the change on the last quarter, key
    points, the 8-quarter trend, breakdowns, low scores with their follow-up issues, verbatims.
    """
    period, overall, trend, tables = quarter.period, quarter.overall, list(quarter.trend), quarter.tables
    verbatims, low_scores, quarter_dates, last_8 = quarter.verbatims, quarter.low_scores, quarter.dates, quarter.last_8
    esc = html.escape

    def table(title: str, rows: list[tuple[str, CsatFigures]], sort: bool = True, limit: int | None = None) -> str:
        ordered = sorted(rows, key=lambda row: (-row[1].responses, row[0])) if sort else rows
        more = ordered[limit:] if limit is not None else []
        ordered = ordered[:limit] if limit is not None else ordered
        body = (
            "".join(
                f"<tr><td style='{CELL}'>{esc(value)}</td><td style='{CELL};text-align:right'>{pct_text(figures)}</td>"
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
        points.append(f"Last 8 quarters: CSAT {pct_text(last_8)}.")
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
        f"<p id='headline' style='font-size:20px;margin:14px 0 6px'><b>CSAT {pct_text(overall)}</b>"
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
