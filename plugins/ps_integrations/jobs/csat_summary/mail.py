"""The leadership mail of a quarter's CSAT report: a text summary, the report as HTML with the chart
inline, and the figures attached as CSV."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid

from ps_integrations.domain.csat import QuarterFigures
from ps_integrations.exports import ExportFile
from ps_integrations.jobs.csat_summary.report import headline, pct_text, summary_html


def leadership_message(
    quarter: QuarterFigures, chart: bytes, by_dimension: ExportFile, recipients: str
) -> EmailMessage:
    period, overall, trend = quarter.period, quarter.overall, quarter.trend
    image_id = make_msgid(idstring="csat-trend")
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = f"[ps-integrations] PS CSAT {headline(period, overall, trend)}"
    message["To"] = recipients
    lines = [
        f"PS customer satisfaction, {headline(period, overall, trend)}.",
        f"Response rate: {overall.responses} of {overall.surveys} surveys answered.",
        f"Last 8 quarters: CSAT {pct_text(quarter.last_8)}.",
        f"Low scores (1 or 2): {len(quarter.low_scores)}"
        + "".join(
            f"\n  - {o.score}/5 {o.engagement_name or o.engagement_title}: {o.followup_url or 'no follow-up issue yet'}"
            for o in quarter.low_scores
        ),
        "",
        "The full report (trend, breakdowns, verbatims) is in the HTML part; the figures are attached as CSV.",
    ]
    message.set_content("\n".join(lines) + "\n")
    message.add_alternative(summary_html(quarter, f"cid:{image_id[1:-1]}"), subtype="html")
    html_part = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(chart, maintype="image", subtype="png", cid=image_id, filename="trend.png")
    message.add_attachment(by_dimension.content, maintype="text", subtype="csv", filename=by_dimension.name)
    return message
