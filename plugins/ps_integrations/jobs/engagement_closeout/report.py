"""The close-out's outputs as text: ``analysis.csv`` (raw and rounded values), ``report.html`` and the
Chatter post. Pure apart from reading the report template."""

from __future__ import annotations

from decimal import Decimal

from jinja2 import Environment

from ps_integrations.domain.engagement_closeout import Analysis, round_money, round_pct
from ps_integrations.exports import Column, ExportFile, csv_file
from ps_integrations.jobs.engagement_closeout.config import ClosedIssue, Opportunity
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.stores.engagement_closeout import CloseoutRecord

MAX_POST_NOTES = 2000


def report_templates() -> Environment:
    from jinja2 import FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(INCLUDE_DIR / "ps_engagement_closeout")),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True,
    )


def raw(value: Decimal | None) -> Decimal | None:
    """An unrounded value without the noise of Decimal's working precision (68.1500 -> 68.15)."""
    if value is None:
        return None
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _text(value: Decimal | None, money: bool = False) -> str:
    if value is None:
        return "-"
    return f"{round_money(value):,.2f}" if money else format(value, "f")


# --- the export ---------------------------------------------------------------------------------------
ANALYSIS_COLUMNS = (
    Column("row", "line (approved hours of one role and category) or total (the engagement)"),
    Column("engagement", "Engagement issue URL"),
    Column("closed_at", "When the engagement issue was closed (UTC)"),
    Column("opportunity_id", "Salesforce opportunity Id"),
    Column("account", "Customer account"),
    Column("billing", "fixed_price (SOW amount) or time_and_materials (hours x bill rate)"),
    Column("currency", "ISO 4217 currency of every amount in the row"),
    Column("role", "Role (from the engineer's GitLab job title); empty on the total row"),
    Column("category", "Time category; 'Adjustment after lock' for changes to exported periods"),
    Column("hours", "Approved hours"),
    Column("cost_rate", "Hourly cost of the role"),
    Column("cost", "hours x cost_rate, unrounded"),
    Column("cost_rounded", "cost rounded to cents, half up"),
    Column("bill_rate", "Hourly bill rate of the role (time and materials only)"),
    Column("revenue", "Revenue: the SOW amount (fixed price) or hours x bill_rate, unrounded"),
    Column("revenue_rounded", "revenue rounded to cents"),
    Column("budgeted_hours", "Budgeted hours (total row)"),
    Column("hours_source", "opportunity (the budget field) or sku_table (quantity x hours per SKU)"),
    Column("percent_complete", "Approved hours / budgeted hours x 100, unrounded (may exceed 100)"),
    Column("percent_complete_rounded", "percent_complete to one decimal"),
    Column("margin", "revenue - cost, unrounded"),
    Column("margin_rounded", "margin rounded to cents"),
    Column("margin_pct", "margin / revenue x 100, unrounded"),
    Column("margin_pct_rounded", "margin_pct to one decimal"),
    Column("target_margin_pct", "Gross margin target, percent"),
    Column("unapproved_hours", "Hours logged on the issue but not exported (approved) yet; not costed"),
    Column("notes", "Overrun, below target, unapproved time, adjustments after lock (total row)"),
)


def analysis_files(
    issue: ClosedIssue, opportunity: Opportunity, analysis: Analysis, templates: Environment
) -> tuple[ExportFile, ExportFile]:
    """``analysis.csv`` (raw and rounded values) and ``report.html``; same inputs, same bytes."""
    base = {
        "engagement": issue.url,
        "closed_at": issue.closed_at,
        "opportunity_id": opportunity.id,
        "account": opportunity.account,
        "billing": analysis.billing,
        "currency": analysis.currency,
    }
    rows = [
        {
            **base,
            "row": "line",
            "role": line.role,
            "category": line.category,
            "hours": raw(line.hours),
            "cost_rate": raw(line.cost_rate),
            "cost": raw(line.cost),
            "cost_rounded": line.cost_rounded,
            "bill_rate": raw(line.bill_rate),
            "revenue": raw(line.revenue),
            "revenue_rounded": None if line.revenue is None else round_money(line.revenue),
        }
        for line in analysis.lines
    ]
    rows.append(
        {
            **base,
            "row": "total",
            "hours": raw(analysis.approved_hours),
            "cost": raw(analysis.cost),
            "cost_rounded": analysis.cost_rounded,
            "revenue": raw(analysis.revenue),
            "revenue_rounded": None if analysis.revenue is None else round_money(analysis.revenue),
            "budgeted_hours": raw(analysis.budgeted_hours),
            "hours_source": analysis.hours_source,
            "percent_complete": raw(analysis.percent_complete),
            "percent_complete_rounded": analysis.percent_complete_rounded,
            "margin": raw(analysis.margin),
            "margin_rounded": None if analysis.margin is None else round_money(analysis.margin),
            "margin_pct": raw(analysis.margin_pct),
            "margin_pct_rounded": analysis.margin_pct_rounded,
            "target_margin_pct": raw(analysis.target_margin_pct),
            "unapproved_hours": raw(analysis.unapproved_hours),
            "notes": "; ".join(analysis.notes),
        }
    )
    table = csv_file(
        "analysis.csv",
        "The cost-vs-actual analysis: one row per role and category, then the total.",
        ANALYSIS_COLUMNS,
        rows,
    )
    percent = analysis.percent_complete_rounded
    html = templates.get_template("report.html.j2").render(
        title=issue.title,
        account=opportunity.account,
        opportunity_id=opportunity.id,
        closed_at=issue.closed_at,
        engagement_url=issue.url,
        billing=analysis.billing.replace("_", " "),
        currency=analysis.currency,
        revenue=_text(analysis.revenue, money=True),
        cost=_text(analysis.cost, money=True),
        margin=_text(analysis.margin, money=True),
        margin_pct="-" if analysis.margin_pct_rounded is None else f"{analysis.margin_pct_rounded}%",
        below_target=analysis.below_target,
        target_pct=round_pct(analysis.target_margin_pct),
        budgeted_hours=_text(analysis.budgeted_hours),
        hours_source=analysis.hours_source.replace("_", " "),
        approved_hours=_text(analysis.approved_hours),
        percent_complete="-" if percent is None else f"{percent}%",
        unapproved_hours=_text(analysis.unapproved_hours),
        lines=[
            {
                "role": line.role,
                "category": line.category,
                "hours": _text(line.hours),
                "cost_rate": _text(line.cost_rate, money=True),
                "cost": _text(line.cost, money=True),
                "bill_rate": _text(line.bill_rate, money=True),
                "revenue": _text(line.revenue, money=True),
            }
            for line in analysis.lines
        ],
        notes=list(analysis.notes),
    )
    report = ExportFile("report.html", html.encode("utf-8"), "The readable report (attached to the opportunity).")
    return table, report


def post_segments(
    issue: ClosedIssue,
    analysis: Analysis,
    tag: str,
    mentions: dict[str, str],
    previous: CloseoutRecord | None,
    follow_up: bool,
) -> list[dict[str, str]]:
    """The Chatter post: a summary (or, after a reopen, a short update), the two mentions and the tag."""
    margin = "-" if analysis.margin_pct_rounded is None else f"{analysis.margin_pct_rounded}%"
    percent = "-" if analysis.percent_complete_rounded is None else f"{analysis.percent_complete_rounded}%"
    target = f"{round_pct(analysis.target_margin_pct)}%"
    if follow_up:
        was = ""
        if previous and previous.margin_pct:
            was = f" (was {round_pct(Decimal(previous.margin_pct))}%)"
        text = (
            f"Updated cost-vs-actual analysis for {issue.title}: the engagement was reopened and closed again "
            f"on {issue.closed_at[:10]}. Gross margin now {margin}{was}, {percent} complete. "
            f"The new report version is attached. Engagement issue: {issue.url} "
        )
    else:
        verdict = "below" if analysis.below_target else "meets"
        text = (
            f"Cost-vs-actual analysis for {issue.title} (engagement closed {issue.closed_at[:10]}): "
            f"gross margin {margin}, {verdict} the {target} target; {percent} complete "
            f"({_text(analysis.approved_hours)} of {_text(analysis.budgeted_hours)} budgeted hours). "
            f"Cost {_text(analysis.cost, money=True)} {analysis.currency} against revenue "
            f"{_text(analysis.revenue, money=True)} {analysis.currency}. The report is attached. "
            f"Engagement issue: {issue.url} "
        )
        if analysis.notes:
            notes = "; ".join(analysis.notes)
            if len(notes) > MAX_POST_NOTES:  # Chatter bodies hold 10,000 characters; the report has them all
                notes = notes[: MAX_POST_NOTES - 30].rsplit(" ", 1)[0] + " ... (see the report)"
            text += f"Notes: {notes}. "
    return [
        {"type": "Text", "text": text + "cc "},
        {"type": "Mention", "id": mentions["controller"]},
        {"type": "Text", "text": " "},
        {"type": "Mention", "id": mentions["finance_business_partner"]},
        {"type": "Text", "text": f" {tag}"},
    ]
