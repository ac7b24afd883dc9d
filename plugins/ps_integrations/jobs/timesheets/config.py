"""The roll-up's settings: the ``ps_timesheet_rollup_config`` variable, the reviewed rules file, the
periods a manual run asks for, and the checks that refuse a run before anything is read or written.
Every bad setting or param raises :class:`ConfigurationError` naming it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ps_integrations.domain.timesheet_approvals import ApprovalLabels
from ps_integrations.domain.timesheets import (
    CATEGORIES,
    CategoryRules,
    Period,
    RollupRules,
    default_category_labels,
    parse_period_key,
    period_key_problem,
    periods_between,
)
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.settings import settings_from_mapping

JOB = "ps_timesheet_rollup"
CONFIG_VARIABLE = "ps_timesheet_rollup_config"
RULES_FILE = INCLUDE_DIR / "ps_timesheet_rollup" / "rules.yml"


def load_rules(path: Path = RULES_FILE) -> RollupRules:
    """The reviewed rules (role targets, job titles, rate card, SKU hours, rounding policy)."""
    import yaml

    try:
        return RollupRules.from_mapping(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except ValueError as error:
        raise ConfigurationError(f"{path.name}: {error}") from None


def refuse_unfinished(selection: Iterable[Period], today: date, business_timezone: str) -> None:
    """A manual run may not export, lock or mail a period that has not ended (a preview may look)."""
    unfinished = sorted(period for period in selection if period.end > today)
    if unfinished:
        names = ", ".join(
            f"{period.key} (ends {period.end.isoformat()} 00:00 {business_timezone})" for period in unfinished
        )
        raise ConfigurationError(
            f"refused: {names} has not ended (today is {today.isoformat()} in {business_timezone}); "
            "a period is exported, locked and mailed only once it is over. "
            "Trigger with preview=true to look at its hours without writing anything."
        )


def check_time_zones(schedule_timezone: str, config: RollupConfig) -> None:
    """The schedule (``PS_BUSINESS_TIMEZONE``) and the dating of timelogs (the variable's
    ``business_timezone``) must be one business time zone, or periods and runs disagree."""
    if ZoneInfo(schedule_timezone).key != ZoneInfo(config.business_timezone).key:
        raise ConfigurationError(
            f"business time zones disagree: the schedule runs in PS_BUSINESS_TIMEZONE={schedule_timezone!r} "
            f"but ps_timesheet_rollup_config.business_timezone is {config.business_timezone!r}. "
            "Set one: drop business_timezone from the variable (it follows PS_BUSINESS_TIMEZONE) "
            "or set PS_BUSINESS_TIMEZONE to the same zone."
        )


def default_business_timezone() -> str:
    """The business time zone the DAG is scheduled in (``PS_BUSINESS_TIMEZONE``, UTC by default)."""
    return os.environ.get("PS_BUSINESS_TIMEZONE", "UTC")


@dataclass(frozen=True)
class RollupConfig:
    group: str = "professional-services"
    engagements_project: str = "professional-services/engagements"
    time_tracking_project: str = "professional-services/time-tracking"
    business_timezone: str = field(default_factory=default_business_timezone)
    period_length: str = "week"
    period_label_prefix: str = "timesheet::"
    approval_labels: tuple[str, ...] = ApprovalLabels().levels
    release_level: int = 2
    weekly_minimum_hours: int = 40
    budget_field: str = "Budgeted_Hours__c"
    adjustment_lookback_weeks: int = 8
    finance_recipients: str = "finance@example.com"
    # any GitLab (issue #20): categories without epics, the server's time zone for date-only entries
    category_labels: dict[str, str] = field(default_factory=default_category_labels)
    category_issues: dict[str, str] = field(default_factory=dict)
    gitlab_server_timezone: str = "UTC"
    # certification issues (issue #20)
    certification_issues: bool = True
    managers: dict[str, str] = field(default_factory=dict)
    manager_job_titles: tuple[str, ...] = ("Delivery Manager",)
    time_tracking_epic: str = "Time Tracking"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> RollupConfig:
        try:
            config = settings_from_mapping(cls, data, CONFIG_VARIABLE)
            ZoneInfo(config.business_timezone)  # unknown zones fail here, naming the zone
            ZoneInfo(config.gitlab_server_timezone)
        except (ValueError, TypeError, ZoneInfoNotFoundError) as error:
            raise ConfigurationError(f"{CONFIG_VARIABLE}: {error}") from None
        if config.period_length not in ("week", "month"):
            raise ConfigurationError("ps_timesheet_rollup_config: period_length must be 'week' or 'month'")
        if not 1 <= config.release_level <= len(config.approval_labels):
            raise ConfigurationError(
                f"ps_timesheet_rollup_config: release_level must be 1..{len(config.approval_labels)} "
                f"(the position of the releasing label in approval_labels)"
            )
        from ps_integrations.hooks.salesforce import SOQL_FIELD

        if not SOQL_FIELD.match(config.budget_field):
            raise ConfigurationError(f"{CONFIG_VARIABLE}: budget_field {config.budget_field!r} is not a field API name")
        for name, mapping in (("category_labels", config.category_labels), ("category_issues", config.category_issues)):
            unknown = sorted({str(category) for category in mapping.values()} - set(CATEGORIES))
            if unknown:
                raise ConfigurationError(
                    f"ps_timesheet_rollup_config: {name} names unknown categories {unknown} "
                    f"(known: {', '.join(CATEGORIES)})"
                )
        return config

    @property
    def categories(self) -> CategoryRules:
        return CategoryRules(dict(self.category_labels), dict(self.category_issues))

    @property
    def labels(self) -> ApprovalLabels:
        return ApprovalLabels(self.period_label_prefix, self.approval_labels)


def selected_periods(
    period: str | None, period_start: str | None, period_end: str | None, length: str
) -> list[Period] | None:
    """The periods a manual run asked for (``period`` or ``period_start``..``period_end``), else None."""
    if period:
        wrong = period_key_problem(period.strip(), length)
        if wrong:
            raise ConfigurationError(f"param period: {wrong}")
        return [parse_period_key(period.strip())]
    if period_start or period_end:
        if not (period_start and period_end):
            raise ConfigurationError("params period_start and period_end go together")
        first, last = _param_date(period_start, "period_start"), _param_date(period_end, "period_end")
        if last < first:
            raise ConfigurationError(f"period_end {period_end} is before period_start {period_start}")
        return periods_between(first, last, length)
    return None


def _param_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"param {name} {text!r} is not an ISO 8601 date (2026-11-02)") from None
