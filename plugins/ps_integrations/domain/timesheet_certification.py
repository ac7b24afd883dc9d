"""The handbook's ManagerCertifiedTimesheet issue, prepared by the roll-up (issue #20): the hours
table by engagement and category, its digest and the hidden marker that finds the issue again. Pure."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from ps_integrations.domain.timesheet_approvals import ApprovalLabels
from ps_integrations.domain.timesheet_entries import NOT_PAYABLE, TimelogFinding
from ps_integrations.domain.timesheets import CENT, Entry, Period, line_hours

CERTIFICATION_MARKER = re.compile(
    r"<!-- ps-integrations:timesheet-certification engineer=(?P<engineer>\S+) period=(?P<period>\S+) "
    r"digest=(?P<digest>[0-9a-f]+) -->"
)
UPDATE_NOTE_MARKER = "<!-- ps-integrations:timesheet-certification-update digest={digest} -->"


@dataclass(frozen=True)
class CertificationRow:
    """One row of a certification issue's table: an engagement (or internal category issue)."""

    engagement: str
    category: str
    timelogs: int
    seconds: int
    hours: Decimal


def certification_rows(entries: Iterable[Entry], policy: str) -> list[CertificationRow]:
    """An engineer's period by engagement and category: each day's line rounded as in the export,
    then summed per engagement (so the table adds up to the approved_hours.csv total)."""
    lines: dict[tuple[str, str, date], list[int]] = defaultdict(list)
    for entry in entries:
        lines[(entry.engagement, entry.category, entry.day)].append(entry.seconds)
    timelogs: dict[tuple[str, str], int] = defaultdict(int)
    seconds: dict[tuple[str, str], int] = defaultdict(int)
    hours: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (engagement, category, _day), logged in lines.items():
        timelogs[(engagement, category)] += len(logged)
        seconds[(engagement, category)] += sum(logged)
        hours[(engagement, category)] += line_hours(policy, logged)
    return [
        CertificationRow(engagement, category, timelogs[key], seconds[key], hours[key].quantize(CENT))
        for key in sorted(timelogs, key=lambda pair: (pair[1], pair[0]))
        for engagement, category in [key]
    ]


@dataclass(frozen=True)
class NotCounted:
    """A timelog of the engineer's period that is not payable (no issue, future-dated): the manager
    sees it next to the table, so no logged time disappears without a word."""

    timelog_id: str
    day: date
    seconds: int
    problem: str


def not_counted_by_engineer(findings: Iterable[TimelogFinding]) -> dict[str, list[NotCounted]]:
    """The not-payable timelogs of a period per engineer, by day and id (as the issue lists them)."""
    by_engineer: dict[str, list[NotCounted]] = defaultdict(list)
    for finding in sorted(findings, key=lambda f: (f.day, f.timelog_id)):
        if finding.kind in NOT_PAYABLE:
            by_engineer[finding.engineer].append(
                NotCounted(finding.timelog_id, finding.day, finding.seconds, finding.problem)
            )
    return by_engineer


def changed_since_certified(
    description: str,
    issue_iid: int,
    engineer: str,
    period: str,
    entries: Iterable[Entry],
    policy: str,
    not_counted: Sequence[NotCounted] = (),
) -> str:
    """Why an export of a certified engineer-period shows other time than the manager certified
    ("" when it is the same, or the issue is not the job's certification issue of that pair): the
    issue's marker carries the digest of the table as it was when the manager certified it."""
    marker = find_certification(description)
    if marker is None or marker[:2] != (engineer, period):
        return ""
    rows = certification_rows(entries, policy)
    if certification_digest(rows, not_counted) == marker[2]:
        return ""
    total = sum((row.hours for row in rows), Decimal("0.00"))
    return (
        f"time logged for {period} changed after the manager certified issue #{issue_iid}: "
        f"{total} h exported, not the table certified - have the manager confirm before paying"
    )


def certification_digest(rows: Sequence[CertificationRow], not_counted: Sequence[NotCounted] = ()) -> str:
    """A short fingerprint of a table (and of the time not counted, when there is some: a table
    without any keeps the fingerprint it had before that list existed): the issue carries it, so a
    re-run knows what the issue shows."""
    text = "\n".join(f"{r.engagement}|{r.category}|{r.timelogs}|{r.seconds}|{r.hours}" for r in rows)
    if not_counted:
        text += "\nnot counted\n" + "\n".join(f"{n.timelog_id}|{n.day}|{n.seconds}" for n in not_counted)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def certification_marker(engineer: str, period: str, digest: str) -> str:
    return f"<!-- ps-integrations:timesheet-certification engineer={engineer} period={period} digest={digest} -->"


def find_certification(description: str | None) -> tuple[str, str, str] | None:
    """(engineer, period, digest) of a certification issue's hidden marker, if it has one."""
    match = CERTIFICATION_MARKER.search(description or "")
    return (match["engineer"], match["period"], match["digest"]) if match else None


def _minutes_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60}:{minutes % 60:02d}"


def certification_description(
    engineer: str,
    manager: str,
    period: Period,
    rows: Sequence[CertificationRow],
    spreadsheet_markdown: str,
    labels: ApprovalLabels,
    policy: str,
    not_counted: Sequence[NotCounted] = (),
) -> str:
    """The issue body: what the manager certifies, the hours table, the time not counted, the
    spreadsheet, how to approve."""
    last_day = period.end - timedelta(days=1)
    total_seconds = sum(row.seconds for row in rows)
    total_hours = sum((row.hours for row in rows), Decimal("0.00"))
    table = [
        "| Category | Engagement | Timelogs | Logged (h:mm) | Hours |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {row.category} | {row.engagement} | {row.timelogs} | {_minutes_text(row.seconds)} | {row.hours} |"
            for row in rows
        ),
        f"| **Total** | | {sum(row.timelogs for row in rows)} | {_minutes_text(total_seconds)} | **{total_hours}** |",
    ]
    if not rows:
        table = ["No time was logged in this period."]
    if not_counted:
        table += [
            "",
            f"Not counted ({len(not_counted)} timelog(s), not payable; finance sees them in the export's findings):",
            *(
                f"- timelog {n.timelog_id}, {n.day.isoformat()}, {_minutes_text(n.seconds)}: {n.problem}"
                for n in not_counted
            ),
        ]
    return "\n".join(
        [
            f"Timesheet of @{engineer} for **{period.key}** ({period.start.isoformat()} to {last_day.isoformat()}),"
            f" prepared for certification by @{manager}.",
            "",
            *table,
            "",
            f"Hours are rounded under the `{policy}` policy of the roll-up's rules. "
            f"Spreadsheet: {spreadsheet_markdown}",
            "",
            f"To certify, add the label `{labels.levels[0]}`; the Head of PS adds `{labels.levels[1]}` and the "
            f"PS Finance Partner `{labels.levels[2]}`. Until it is certified, late changes to the period's time "
            "update this table and are noted below.",
            "",
            certification_marker(engineer, period.key, certification_digest(rows, not_counted)),
        ]
    )
