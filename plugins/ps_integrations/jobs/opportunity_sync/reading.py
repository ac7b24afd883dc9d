"""Reading the opportunity sync's inputs: which window a run covers, the Salesforce query, the issue
template and the engagement-type mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ps_integrations.domain.opportunity_sync import EngagementTypes
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.jobs.opportunity_sync.ports import OpportunitySource
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.run_summary import RunSummary
from ps_integrations.run_window import RunWindow, run_window

JOB_DIR = INCLUDE_DIR / "ps_opportunity_sync"
SERVICES_YML = INCLUDE_DIR / "reference" / "services.yml"
PS_RECORD_TYPE = "Professional Services Only"
FIELDS = (
    "Id, Name, IsDeleted, IsWon, IsClosed, StageName, CloseDate, Amount, CurrencyIsoCode, SystemModstamp, "
    "Account.Name, Owner.Name, Owner.Email, RecordType.Name"
)
CHILDREN = (
    "(SELECT Id, Quantity, UnitPrice, TotalPrice, Product2.ProductCode, Product2.Name "
    "FROM OpportunityLineItems ORDER BY Id), "
    "(SELECT Id, Role, IsPrimary, ContactId FROM OpportunityContactRoles ORDER BY Id)"
)
ID_CHUNK = 200


def sync_window(context: Mapping[str, Any], overlap_minutes: int, now: datetime | None = None) -> RunWindow | None:
    """The SystemModstamp window of a run: ``since``/``until`` params, else the data interval widened
    by the overlap, else (a manual run with neither) the last day; none when only ``opportunity_ids``
    are given (then just those records are read)."""
    params = context.get("params") or {}
    since, until = params.get("since"), params.get("until")
    if not (since or until) and params.get("opportunity_ids"):
        return None
    overlap = timedelta(minutes=overlap_minutes)
    return run_window(context, since=since, until=until, default=timedelta(days=1), overlap=overlap, now=now)


def soql_window(window: RunWindow) -> str:
    """``SystemModstamp`` in [start, end). SOQL datetime literals have whole seconds: the start is
    rounded down and the end up, so nothing stamped inside a partial second is missed (the overlap
    absorbs the rest)."""
    start = window.start.astimezone(UTC).replace(microsecond=0)
    end = window.end.astimezone(UTC)
    if end.microsecond:
        end = end.replace(microsecond=0) + timedelta(seconds=1)
    return f"SystemModstamp >= {_soql_time(start)} AND SystemModstamp < {_soql_time(end)}"


def _soql_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_key(value: str | datetime) -> str:
    """A SystemModstamp (``2026-10-01T12:00:00.000+0000``) or a datetime as fixed-width UTC text."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def soql_id(value: str) -> str:
    """A Salesforce record id, checked (it goes into SOQL)."""
    value = str(value).strip()
    if not value.isalnum() or len(value) not in (15, 18):
        raise ConfigurationError(f"not a Salesforce record id: {value!r}")
    return value


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class OpportunityReader:
    """The PS opportunities of a window or of given ids, with their line items and contact roles."""

    def __init__(
        self, salesforce: OpportunitySource, writeback_field: str | None, org_currency: str, summary: RunSummary
    ) -> None:
        self.salesforce = salesforce
        self.writeback_field = writeback_field
        self.org_currency = org_currency
        self.summary = summary

    @cached_property
    def fields(self) -> str:
        """The fields the org has: CurrencyIsoCode only with multi-currency (learnt by describe, once a run)."""
        if "CurrencyIsoCode" in self.salesforce.describe_fields("Opportunity"):
            return FIELDS
        self.summary.note(f"org without multi-currency: amounts in {self.org_currency} (org_currency)")
        return FIELDS.replace(" CurrencyIsoCode,", "")

    def _query(self, where: str) -> Iterable[dict[str, Any]]:
        writeback = f", {self.writeback_field}" if self.writeback_field else ""
        # SOQL from constants, validated ids and formatted timestamps only
        soql = (
            f"SELECT {self.fields}{writeback}, {CHILDREN} FROM Opportunity "  # noqa: S608
            f"WHERE RecordType.Name = '{PS_RECORD_TYPE}' AND ({where}) ORDER BY SystemModstamp, Id"
        )
        return self.salesforce.query_records(soql, include_deleted=True)

    def read(self, window: RunWindow | None, ids: list[str], retry_ids: list[str]) -> list[dict[str, Any]]:
        """Records stamped in the window (deleted ones too), the given ids, and earlier failures to
        retry that the window did not read; each once."""
        records: dict[str, dict[str, Any]] = {}
        if window is not None:
            for record in self._query(soql_window(window)):
                records[record.get("Id") or ""] = record
        for chunk_ids in chunks([*ids, *[key for key in retry_ids if key not in records]], ID_CHUNK):
            quoted = ", ".join(f"'{soql_id(record_id)}'" for record_id in chunk_ids)
            for record in self._query(f"Id IN ({quoted})"):
                records[record.get("Id") or ""] = record
        return list(records.values())


def load_engagement_types(
    mapping_path: Path = JOB_DIR / "engagement_types.yml", services_path: Path = SERVICES_YML
) -> EngagementTypes:
    with open(mapping_path, encoding="utf-8") as handle:
        mapping = yaml.safe_load(handle) or {}
    with open(services_path, encoding="utf-8") as handle:
        catalog = yaml.safe_load(handle) or []
    categories = {
        str(entry["sku"]): str(entry.get("category") or "")
        for entry in catalog
        if isinstance(entry, dict) and entry.get("sku")
    }
    return EngagementTypes(
        by_sku=dict(mapping.get("skus") or {}),
        by_category=dict(mapping.get("category_defaults") or {}),
        sku_categories=categories,
        custom_sow=str(mapping.get("custom_sow") or "Custom SOW"),
    )


def block_renderer() -> Callable[[dict[str, Any]], str]:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(JOB_DIR)),
        autoescape=False,  # noqa: S701 - Markdown, every value is escaped for GitLab before rendering
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    template = environment.get_template("issue_block.md.j2")
    return template.render
