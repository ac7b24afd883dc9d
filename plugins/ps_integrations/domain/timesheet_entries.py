"""GitLab timelogs -> unrounded entries of the business calendar, and what looks wrong (issue #8, #20).
Pure: ``today`` is an argument; the timelogs are records with the fields of :class:`TimelogRecord`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from ps_integrations.domain.timesheets import CategoryRules, Entry


class TimelogRecord(Protocol):
    """What a timelog must offer (the GitLab hook's ``GitLabTimelog`` does)."""

    @property
    def id(self) -> str: ...
    @property
    def spent_at(self) -> str: ...
    @property
    def seconds(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def issue_id(self) -> int | None: ...
    @property
    def issue_url(self) -> str: ...
    @property
    def issue_state(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def epic_title(self) -> str | None: ...


@dataclass(frozen=True)
class TimelogFinding:
    timelog_id: str
    engineer: str
    kind: str  # no_issue, future_dated, closed_engagement
    problem: str
    day: date
    seconds: int = 0  # the time logged (what a not-payable finding leaves out)


def local_day_reader(business_timezone: str, server_timezone: str = "UTC") -> Callable[[str], date]:
    """``spentAt`` (ISO 8601, UTC) -> business-local date, converting once per UTC hour.

    Time-zone offsets change only on UTC hour boundaries, so the local time of the hour's start
    plus the minutes decides the date; a million timelogs touch about 17,000 distinct hours.
    A date-only ``/spend 1h 2026-10-05`` is stored by GitLab at midnight in the *server's* time
    zone: a ``spentAt`` exactly on the server's midnight keeps the server-local date the engineer
    typed, wherever the business time zone is.
    """
    zone = ZoneInfo(business_timezone)
    server = ZoneInfo(server_timezone)
    # UTC hour "2026-03-29T01" -> (local date at its start, minute from which the local date is the
    # next day (60: never), that next date, and where the server's midnight falls in the hour: its
    # "MM" minute and server-local date, or None)
    hours: dict[str, tuple[date, int, date, tuple[str, date] | None]] = {}

    def hour_dates(hour: str) -> tuple[date, int, date, tuple[str, date] | None]:
        utc_start = datetime.fromisoformat(hour + ":00:00+00:00")
        start, server_start = utc_start.astimezone(zone), utc_start.astimezone(server)
        day = start.date()
        rollover = 60 - start.minute if start.hour == 23 and start.minute else 60
        midnight = None
        if server_start.hour == 0 and server_start.minute == 0:
            midnight = ("00", server_start.date())
        elif server_start.hour == 23 and server_start.minute:  # a half-hour zone's midnight (Asia/Kolkata)
            midnight = (f"{60 - server_start.minute:02d}", server_start.date() + timedelta(days=1))
        found = hours[hour] = (day, rollover, day + timedelta(days=1), midnight)
        return found

    def local_day(spent_at: str) -> date:
        if len(spent_at) < 16 or not (spent_at.endswith("Z") or spent_at.endswith("+00:00")):
            moment = datetime.fromisoformat(spent_at.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(f"timelog time {spent_at!r} carries no time zone")
            on_server = moment.astimezone(server)
            if on_server.time() == datetime.min.time():
                return on_server.date()
            return moment.astimezone(zone).date()
        hour = spent_at[:13]
        day, rollover, next_day, server_midnight = hours.get(hour) or hour_dates(hour)
        if server_midnight is not None and spent_at[14:16] == server_midnight[0] and _no_seconds(spent_at):
            return server_midnight[1]  # a date-only entry: the server's calendar day
        if rollover < 60 and int(spent_at[14:16]) >= rollover:
            return next_day
        return day

    return local_day


def _no_seconds(spent_at: str) -> bool:
    """``2026-10-05T00:30:00Z`` / ``...:00.000Z`` / ``...:00+00:00`` / ``...T00:30Z``: no seconds or fraction."""
    tail = spent_at[16:].removesuffix("Z").removesuffix("+00:00")
    return tail in ("", ":00", ":00.000", ":00.000000")


def local_date(moment: datetime, business_timezone: str) -> date:
    """The business-local date of an instant: midnight edges and DST included (the reader above)."""
    if moment.tzinfo is None:
        raise ValueError("timelog times must carry a time zone")
    return local_day_reader(business_timezone)(moment.astimezone(UTC).isoformat())


NOT_PAYABLE = ("no_issue", "future_dated")  # findings whose timelog is left out of every total


def to_entries(
    timelogs: Iterable[TimelogRecord],
    business_timezone: str,
    engagement_project: str,
    first_day: date,
    last_day: date,
    today: date,
    categories: CategoryRules | None = None,
    server_timezone: str = "UTC",
    parent_titles: Mapping[int, str] | None = None,
) -> tuple[list[Entry], list[TimelogFinding]]:
    """Unrounded entries whose business-local date is in [first_day, last_day], and what looks wrong.

    Timelogs without an issue or dated after ``today`` are not payable: they become findings and
    no entry (a future-dated timelog is picked up once its day has come, as an adjustment if its
    period was exported by then).

    :param parent_titles: issue id -> title of its parent work item (where the instance has them);
        else the issue's epic (when the timelog carries it), else its labels, else the mapping.
    """
    local_day = local_day_reader(business_timezone, server_timezone)
    rules = categories or CategoryRules()
    parents = parent_titles or {}
    # plain dict as cache: a million timelogs have a few dozen categories
    category_cache: dict[tuple[bool, str | None, tuple[str, ...], str], str] = {}
    engagement_category = rules.category(True, None, (), "")
    make_entry = Entry._make
    entries, findings = [], []
    for timelog in timelogs:
        day = local_day(timelog.spent_at)
        if not first_day <= day <= last_day:
            continue
        timelog_id = timelog.id
        engineer = timelog.username
        issue_id = timelog.issue_id
        seconds = timelog.seconds
        if issue_id is None:
            findings.append(
                TimelogFinding(
                    timelog_id,
                    engineer,
                    "no_issue",
                    f"timelog without an issue ({seconds / 60:g} min on a merge request or a deleted issue), not paid",
                    day,
                    seconds,
                )
            )
            continue
        url = timelog.issue_url
        if day > today:
            findings.append(
                TimelogFinding(
                    timelog_id,
                    engineer,
                    "future_dated",
                    f"future-dated entry ({day.isoformat()}, {seconds / 60:g} min on {url}), not paid before its day",
                    day,
                    seconds,
                )
            )
            continue
        is_engagement = timelog.project == engagement_project
        if is_engagement and timelog.issue_state == "closed":
            findings.append(
                TimelogFinding(timelog_id, engineer, "closed_engagement", f"time on a closed engagement ({url})", day)
            )
        if is_engagement:
            category = engagement_category
        else:
            parent = parents.get(issue_id) or timelog.epic_title
            kind = (False, parent, timelog.labels, url if rules.by_issue else "")
            cached = category_cache.get(kind)
            category = category_cache[kind] = rules.category(*kind) if cached is None else cached
        entries.append(make_entry((timelog_id, engineer, day, url, category, seconds)))
    return entries, findings
