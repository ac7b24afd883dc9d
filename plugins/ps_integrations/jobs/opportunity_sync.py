"""The opportunity sync job: Salesforce -> GitLab engagement issues, applied from a pure plan.

The DAG calls ``OpportunitySync(...).run(window)``. Decisions live in
``ps_integrations.domain.opportunity_sync``; this module does the I/O: the query, the marker
index, GitLab writes (concurrent, paced below the rate limit), write-back to Salesforce, the
state store and the audit log.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import yaml

from ps_integrations import clock
from ps_integrations.domain.opportunity_sync import (
    Action,
    EngagementTypes,
    InvalidRecord,
    IssueContent,
    SyncConfig,
    build_content,
    change_id,
    change_ids,
    change_note,
    compose_description,
    find_marker,
    flag_note,
    is_sync_label,
    label_collisions,
    parse_opportunity,
    plan,
    require_issue_fields,
    snapshot,
    unflag_note,
    with_change_id,
)
from ps_integrations.exceptions import GitLabApiError, IntegrationError, SalesforceApiError
from ps_integrations.pacing import Pacer
from ps_integrations.paths import INCLUDE_DIR
from ps_integrations.run_summary import RecordFailure, RunSummary

log = logging.getLogger(__name__)

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
API_USAGE_WARNING_PERCENT = 80
FAILURES_NAMED_IN_SUMMARY = 3
WRITE_KINDS = ("create", "update", "flag", "unflag", "note")
COUNTERS = {"create": "created", "update": "updated", "flag": "flagged", "unflag": "unflagged", "note": "noted"}


class LabelCollision(IntegrationError):
    """Adding a sync label would remove a label the sync did not set (scoped labels are exclusive)."""


@dataclass(frozen=True)
class PlannedNote:
    """A note a write will post, known before any GitLab call so it can be recorded as pending first."""

    change_id: str
    body: str
    snapshot: dict[str, Any]
    flagged: bool


@dataclass(frozen=True)
class Window:
    """The SystemModstamp range read, [start, end)."""

    start: datetime
    end: datetime

    def soql(self) -> str:
        # SOQL datetime literals have whole seconds: round the start down and the end up, so
        # nothing stamped inside a partial second is missed (the overlap absorbs the rest).
        start = self.start.astimezone(UTC).replace(microsecond=0)
        end = self.end.astimezone(UTC)
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


def load_engagement_types(
    mapping_path: Any = JOB_DIR / "engagement_types.yml", services_path: Any = SERVICES_YML
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


class OpportunitySync:
    def __init__(
        self,
        salesforce: Any,
        gitlab: Any,
        store: Any,
        config: SyncConfig,
        dag_id: str,
        run_id: str,
        dry_run: bool = False,
    ) -> None:
        self.salesforce = salesforce
        self.gitlab = gitlab
        self.store = store
        self.config = config
        self.dag_id = dag_id
        self.run_id = run_id
        self.dry_run = dry_run
        self.summary = RunSummary()
        self.types = load_engagement_types()
        self.render = block_renderer()
        self.plan_lines: list[str] = []
        self._previous: dict[str, dict[str, Any]] = {}
        self._opportunity_of: dict[int, str] = {}
        self.index_pages = 0

    # --- reading ------------------------------------------------------------------------------------
    @cached_property
    def multi_currency(self) -> bool:
        """Whether the org has CurrencyIsoCode (multi-currency orgs only); learnt by describe, once a run."""
        return "CurrencyIsoCode" in self.salesforce.describe_fields("Opportunity")

    @cached_property
    def fields(self) -> str:
        if self.multi_currency:
            return FIELDS
        self.summary.note(f"org without multi-currency: amounts in {self.config.org_currency} (org_currency)")
        return FIELDS.replace(" CurrencyIsoCode,", "")

    def _query(self, where: str) -> Iterable[dict[str, Any]]:
        writeback = f", {self.config.writeback_field}" if self.config.writeback_field else ""
        # SOQL from constants, validated ids and formatted timestamps only
        soql = (
            f"SELECT {self.fields}{writeback}, {CHILDREN} FROM Opportunity "  # noqa: S608
            f"WHERE RecordType.Name = '{PS_RECORD_TYPE}' AND ({where}) ORDER BY SystemModstamp, Id"
        )
        return self.salesforce.query_records(soql, include_deleted=True)

    def fetch(self, window: Window | None, opportunity_ids: list[str], retry_ids: list[str]) -> list[dict[str, Any]]:
        """Records in the window (or the given ids), plus earlier failures to retry; each once."""
        records: dict[str, dict[str, Any]] = {}
        if window is not None:
            for record in self._query(window.soql()):
                records[record.get("Id") or ""] = record
        for chunk_ids in _chunks([*opportunity_ids, *[i for i in retry_ids if i not in records]], 200):
            quoted = ", ".join(f"'{_soql_id(record_id)}'" for record_id in chunk_ids)
            for record in self._query(f"Id IN ({quoted})"):
                records[record.get("Id") or ""] = record
        return list(records.values())

    @cached_property
    def salesforce_base(self) -> str:
        instance = getattr(self.salesforce.get_conn(), "sf_instance", "")
        return f"https://{instance}" if instance else ""

    @cached_property
    def project(self) -> Any:
        return self._gitlab(lambda: self.gitlab.client.projects.get(self.config.project, lazy=True))

    @cached_property
    def coordinator_id(self) -> int | None:
        if not self.config.coordinator:
            return None
        users = self._gitlab(lambda: self.gitlab.client.users.list(username=self.config.coordinator))
        if not users:
            self.summary.note(
                f"WARNING coordinator {self.config.coordinator!r} not found in GitLab; issues left unassigned"
            )
            return None
        return int(users[0].id)

    def marker_index(self) -> dict[str, int]:
        """Opportunity id -> issue iid, from the markers in the project's issues.

        A plain listing, page by page through the pacer: no ``search`` parameter, because GitLab limits
        searches separately (search_rate_limit, 30 per minute by default) and a search listing of a few
        thousand synced issues would meet its 429 (and a minute's Retry-After). Costs
        ceil(issues in the project / 100) calls under the global limit.
        """
        import gitlab.exceptions

        index: dict[str, int] = {}
        listing = self._gitlab(
            functools.partial(
                self.project.issues.list, state="all", order_by="created_at", sort="asc", per_page=100, iterator=True
            )
        )  # the first page; python-gitlab fetches each next one when the last item is consumed
        self.index_pages = 1
        while True:
            try:
                for issue in itertools.islice(listing, 100):
                    opportunity_id = find_marker(issue.description)
                    if opportunity_id:
                        index.setdefault(opportunity_id, int(issue.iid))
            except gitlab.exceptions.GitlabError as error:
                raise GitLabApiError(error.response_code or 0, "", str(error.error_message)) from None
            if not listing.next_page:  # X-Next-Page (GitLab drops X-Total past 10,000 issues)
                break
            self._pacer.wait()  # the next page is a request too
            self.index_pages += 1
        log.info("Marker index: %d synced issues in %s (%d pages)", len(index), self.config.project, self.index_pages)
        return index

    # --- GitLab calls, paced below the rate limit ---------------------------------------------------------
    @cached_property
    def _pacer(self) -> Pacer:
        # 98% of the configured limit: even spacing never fills GitLab's window, even with skew.
        return Pacer(max(1.0, self.config.gitlab_requests_per_minute * 0.98), burst=5)

    @cached_property
    def _notes_pacer(self) -> Pacer:
        # Note creation has its own limit (notes_create_limit, 300/min by default), on top of the global one.
        # GitLab counts it in fixed windows: a burst must fit in the 2% margin left below the limit.
        per_minute = max(1.0, self.config.gitlab_notes_per_minute * 0.98)
        return Pacer(per_minute, burst=min(5, int(self.config.gitlab_notes_per_minute * 0.02)))

    def _gitlab(self, call: Callable[[], Any]) -> Any:
        import gitlab.exceptions

        self._pacer.wait()
        try:
            return call()
        except gitlab.exceptions.GitlabError as error:
            raise GitLabApiError(error.response_code or 0, "", str(error.error_message)) from None

    # --- the run --------------------------------------------------------------------------------------
    def run(self, window: Window | None, opportunity_ids: list[str] | None = None) -> RunSummary:
        states = {row["opportunity_id"]: row for row in self.store.fetch_all("opportunity_sync/all_states")}
        pending = {
            (row["opportunity_id"], row["kind"]): row for row in self.store.fetch_all("opportunity_sync/all_pending")
        }
        quarantined = {key for key, row in states.items() if row["quarantined"]}
        retry_ids = sorted(
            key for key, row in states.items() if row["status"] in ("failed", "creating") and not row["quarantined"]
        )
        records = self.fetch(window, list(opportunity_ids or []), [*retry_ids, *self._read_before(window)])
        self.summary.add("read", len(records))
        self._record_reads(records)
        opportunities = []
        for record in records:
            try:
                opportunity = parse_opportunity(record, self.config.writeback_field, self.config.org_currency)
                if opportunity.won:
                    require_issue_fields(opportunity)
                opportunities.append(opportunity)
            except InvalidRecord as error:
                self._fail(error.record_id, "Salesforce", error.reason, error.field, states)
        contents: dict[str, IssueContent] = {}
        for opportunity in opportunities:
            if opportunity.won:
                url = f"{self.salesforce_base}/lightning/r/Opportunity/{opportunity.id}/view"
                contents[opportunity.id] = build_content(opportunity, self.types, self.config, self.render, url)
        unknown = sorted({sku for content in contents.values() for sku in content.unknown_skus})
        if unknown:
            self.summary.note(f"unknown SKUs (labelled {self.config.unknown_sku_label}): {', '.join(unknown)}")
        needs_index = any(
            (states.get(o.id) or {}).get("issue_iid") is None and (o.won or o.id in states) for o in opportunities
        )
        index = self.marker_index() if needs_index else {}
        if not self.dry_run:
            self._settle_pending_notes(pending, states)
        self._previous = {key: dict(row) for key, row in states.items()}
        actions = plan(opportunities, self._previous, index, contents, quarantined)
        if self.dry_run:
            self._log_plan(actions)
        else:
            self._apply(actions, states)
            self._write_back_pending(quarantined)
        self._report(actions, quarantined, states)
        return self.summary

    # --- re-runs read what the window read before (our own write-back moves SystemModstamp) -----------
    def _read_before(self, window: Window | None) -> list[str]:
        """Opportunities an earlier run found stamped inside this window (their stamp may have moved since)."""
        if window is None:
            return []
        rows = self.store.fetch_all(
            "opportunity_sync/read_in_window",
            {"window_start": stamp_key(window.start), "window_end": stamp_key(window.end)},
        )
        return [row["opportunity_id"] for row in rows]

    def _record_reads(self, records: list[dict[str, Any]]) -> None:
        if self.dry_run:
            return
        rows = []
        for record in records:
            try:
                rows.append({"opportunity_id": str(record["Id"]), "modstamp": stamp_key(record["SystemModstamp"])})
            except (KeyError, TypeError, ValueError):
                continue  # a record without a usable stamp fails by name when parsed
        if rows:
            self.store.execute("opportunity_sync/record_read", rows)

    # --- pending effects: notes (exactly once) and write-backs (until done) ----------------------------
    def _add_pending(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            now = clock.now_iso()
            self.store.execute("opportunity_sync/upsert_pending", [{**row, "updated_at": now} for row in rows])

    def _drop_pending(self, opportunity_id: str, kind: str, effect_id: str) -> None:
        self.store.execute(
            "opportunity_sync/delete_pending", {"opportunity_id": opportunity_id, "kind": kind, "effect_id": effect_id}
        )

    def _settle_pending_notes(self, pending: dict[tuple[str, str], dict[str, Any]], states: dict[str, Any]) -> None:
        """A note recorded as pending but not confirmed: the run that posted it died (or GitLab failed).
        If the issue has a note with its change id, it was posted: record the state it reported."""
        for (opportunity_id, kind), row in sorted(pending.items()):
            if kind != "note":
                continue
            payload = json.loads(row["payload_json"])
            iid = int(payload["iid"])
            try:
                posted = self._note_posted(iid, row["effect_id"])
            except GitLabApiError as error:
                if error.status != 404:  # a deleted issue has no note to find; otherwise ask again next run
                    log.warning("Could not check the pending note of %s on issue #%s: %s", opportunity_id, iid, error)
                    continue
                posted = False
            if posted:
                state = dict(states.get(opportunity_id) or {})
                state.update(
                    {
                        "opportunity_id": opportunity_id,
                        "project": self.config.project,
                        "issue_iid": iid,
                        "status": "flagged" if payload["flagged"] else "synced",
                        "flagged": int(bool(payload["flagged"])),
                        "snapshot_json": json.dumps(payload["snapshot"], sort_keys=True),
                        "failure_reason": None,
                        "failure_count": 0,
                        "last_run_id": self.run_id,
                        "updated_at": clock.now_iso(),
                    }
                )
                for key in ("quarantined",):
                    state.setdefault(key, 0)
                for key in (
                    "issue_url",
                    "content_hash",
                    "labels_json",
                    "title",
                    "due_date",
                    "last_modstamp",
                    "quarantine_reason",
                ):
                    state.setdefault(key, None)
                self.store.execute("opportunity_sync/upsert_state", state)
                states[opportunity_id] = state
                self._audit(opportunity_id, "note confirmed", f"issue #{iid}: change {row['effect_id']} was posted")
            self._drop_pending(opportunity_id, "note", row["effect_id"])

    def _note_posted(self, iid: int, identifier: str) -> bool:
        """Whether the issue has a note carrying the change id (newest first, page by page)."""
        issue = self.project.issues.get(iid, lazy=True)
        page = 1
        while True:
            listing = functools.partial(issue.notes.list, sort="desc", order_by="created_at", per_page=100, page=page)
            notes = self._gitlab(listing)
            if any(identifier in change_ids(note.body) for note in notes):
                return True
            if len(notes) < 100:
                return False
            page += 1

    def _write_back_pending(self, quarantined: set[str]) -> None:
        """Every owed issue-URL write-back, this run's and earlier runs' alike; failures fail the run by name."""
        if not self.config.writeback_field:
            return
        rows = [
            row
            for row in self.store.fetch_all("opportunity_sync/all_pending")
            if row["kind"] == "writeback" and row["opportunity_id"] not in quarantined
        ]
        if not rows:
            return
        updates = {row["opportunity_id"]: json.loads(row["payload_json"]) for row in rows}
        by_id = {row["opportunity_id"]: row for row in rows}
        try:
            results = self.salesforce.update_records(
                "Opportunity", {key: {value["field"]: value["url"]} for key, value in updates.items()}
            )
        except SalesforceApiError as error:
            results = dict.fromkeys(updates, str(error))
        written = 0
        for record_id, problem in sorted(results.items()):
            row = by_id[record_id]
            if problem:
                reason = f"write-back of the issue URL failed (attempt {int(row['attempts']) + 1}): {problem}"
                self.summary.fail(
                    RecordFailure("Salesforce", f"Opportunity {record_id}", reason, updates[record_id]["field"])
                )
                self._audit(record_id, "failed", f"write-back: {problem}")
                self.store.execute(
                    "opportunity_sync/pending_failed",
                    {
                        "opportunity_id": record_id,
                        "kind": "writeback",
                        "last_error": str(problem)[:1000],
                        "updated_at": clock.now_iso(),
                    },
                )
            else:
                written += 1
                self._drop_pending(record_id, "writeback", row["effect_id"])
        self.summary.add("written back", written)

    def _log_plan(self, actions: list[Action]) -> None:
        for action in actions:
            if action.kind in ("unchanged", "skipped"):
                self.summary.add("not won" if action.kind == "skipped" else action.kind)
                continue
            changes = "; ".join(f"{c.field}: {c.old} -> {c.new}" for c in action.changes) or "-"
            issue = action.issue_iid or "new"
            line = f"would {action.kind} Opportunity {action.opportunity.id} (issue {issue}); changes: {changes}"
            self.plan_lines.append(line)
            log.info("DRY RUN: %s", line)
            self.summary.add(f"would {action.kind}")
        self.summary.note("dry run: nothing was written")

    def _apply(self, actions: list[Action], states: dict[str, Any]) -> None:
        writes = [action for action in actions if action.kind in WRITE_KINDS]
        writebacks: list[dict[str, Any]] = []
        for action in actions:
            if action.kind not in WRITE_KINDS:
                self.summary.add("not won" if action.kind == "skipped" else action.kind)
                if action.kind == "unchanged":
                    self._audit(action.opportunity.id, "unchanged", f"issue #{action.issue_iid}")
                    self._adopt_if_needed(action, states)
                    writebacks.extend(self._owed_writeback(action, states))
        self._add_pending(writebacks)
        # Recorded before the POSTs, in one transaction: a crash after a POST leaves "creating",
        # which the next run resolves through the marker index instead of creating a second issue.
        creating = [self._row(action, states, "creating") for action in writes if action.kind == "create"]
        if creating:
            self.store.execute("opportunity_sync/upsert_state", creating)
            states.update({row["opportunity_id"]: row for row in creating})
        # Likewise every note is pending before it is posted; its change id is hidden in its body, so
        # a run after a crash finds it on the issue instead of posting it twice.
        notes = {action.opportunity.id: note for action in writes if (note := self._planned_note(action))}
        self._add_pending(
            [
                {
                    "opportunity_id": key,
                    "kind": "note",
                    "effect_id": note.change_id,
                    "payload_json": json.dumps(
                        {
                            "iid": next(a.issue_iid for a in writes if a.opportunity.id == key),
                            "snapshot": note.snapshot,
                            "flagged": note.flagged,
                        },
                        sort_keys=True,
                    ),
                }
                for key, note in notes.items()
            ]
        )
        workers = max(1, min(self.config.concurrency, len(writes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gitlab") as pool:
            futures = {pool.submit(self._write, action, notes.get(action.opportunity.id)): action for action in writes}
            for future in as_completed(futures):
                action = futures[future]
                try:
                    issue = future.result()
                except (GitLabApiError, IntegrationError) as error:
                    self._fail(action.opportunity.id, "GitLab", str(error), None, states, action)
                    continue
                self._after_write(action, issue, states, notes.get(action.opportunity.id))

    def _planned_note(self, action: Action) -> PlannedNote | None:
        opportunity = action.opportunity
        parts = []
        if action.kind == "flag":
            parts.append(flag_note(opportunity, self.config.reopened_label))
        elif action.kind == "unflag":
            parts.append(unflag_note(self.config.reopened_label))
        if action.changes:
            parts.append(change_note(action.changes, opportunity.modstamp))
        if not parts:
            return None
        row = self._previous.get(opportunity.id) or {}
        old = json.loads(row["snapshot_json"]) if row.get("snapshot_json") else None
        new = snapshot(opportunity)
        identifier = change_id(opportunity.id, action.kind, old, new)
        flagged = action.kind in ("flag", "note")
        return PlannedNote(identifier, with_change_id("\n\n".join(parts), identifier), new, flagged)

    def _check_labels(self, iid: int, current: list[str], adding: list[str]) -> None:
        row = self._previous.get(self._opportunity_of.get(iid, "")) or {}
        ours = set(json.loads(row.get("labels_json") or "[]")) - set(self.config.base_labels)
        ours |= {label for label in current if is_sync_label(label, self.config)}
        collisions = label_collisions(list(current), adding, ours)
        if collisions:
            listed = "; ".join(f"adding {new!r} would remove {old!r}" for new, old in collisions)
            raise LabelCollision(
                f"issue #{iid}: {listed}, a label the sync did not set (GitLab scoped labels are exclusive); "
                "nothing was changed. Remove that label or give the sync label a scope of its own"
            )

    def _write(self, action: Action, note: PlannedNote | None) -> dict[str, Any]:
        """The GitLab calls for one action; returns {iid, web_url}."""
        opportunity, content = action.opportunity, action.content
        if action.kind == "create":
            assert content is not None
            params: dict[str, Any] = {
                "title": content.title,
                "description": compose_description(None, content, opportunity.id),
                "labels": ",".join(content.labels),
            }
            if content.due_date:
                params["due_date"] = content.due_date
            if self.coordinator_id is not None:
                params["assignee_ids"] = [self.coordinator_id]
            issue = self._gitlab(lambda: self.project.issues.create(params))
            return {"iid": int(issue.iid), "web_url": issue.web_url}
        iid = action.issue_iid
        assert iid is not None
        self._opportunity_of[iid] = opportunity.id
        current = self._gitlab(lambda: self.project.issues.get(iid))
        if action.kind in ("flag", "note"):
            if action.kind == "flag" and self.config.reopened_label not in current.labels:
                self._check_labels(iid, current.labels, [self.config.reopened_label])
                self._gitlab(lambda: self.project.issues.update(iid, {"add_labels": self.config.reopened_label}))
            if note is not None:
                self._post_note(current, note)
            return {"iid": iid, "web_url": current.web_url}
        assert content is not None
        state_row = self._previous.get(opportunity.id) or {}
        old_labels = set(json.loads(state_row.get("labels_json") or "[]")) - set(self.config.base_labels)
        new_labels = set(content.labels) - set(self.config.base_labels)
        update: dict[str, Any] = {"description": compose_description(current.description, content, opportunity.id)}
        add = sorted(label for label in new_labels - old_labels if label not in current.labels)
        remove = sorted(old_labels - new_labels)
        if action.kind == "unflag":
            remove.append(self.config.reopened_label)
        self._check_labels(iid, current.labels, add)
        if add:
            update["add_labels"] = ",".join(add)
        if remove:
            update["remove_labels"] = ",".join(remove)
        if content.title != state_row.get("title"):
            update["title"] = content.title
        if content.due_date and content.due_date != state_row.get("due_date"):
            update["due_date"] = content.due_date
        changed_text = update["description"] != current.description or len(update) > 1
        if changed_text:
            self._gitlab(lambda: self.project.issues.update(iid, update))
        if note is not None:
            self._post_note(current, note)
        return {"iid": iid, "web_url": current.web_url}

    def _post_note(self, issue: Any, note: PlannedNote) -> None:
        self._notes_pacer.wait()
        self._gitlab(lambda: issue.notes.create({"body": note.body}))

    def _after_write(
        self, action: Action, issue: dict[str, Any], states: dict[str, Any], note: PlannedNote | None
    ) -> None:
        opportunity = action.opportunity
        action.issue_iid = issue["iid"]
        flagged = action.kind in ("flag", "note")
        row = self._row(action, states, "flagged" if flagged else "synced", issue.get("web_url"))
        url = row.get("issue_url")
        owes_writeback = bool(
            self.config.writeback_field
            and url
            and opportunity.issue_url_field != url
            and action.kind in ("create", "update", "unflag")
        )
        # One transaction: the state, the note confirmed and the write-back owed are recorded together.
        with self.store.transaction() as connection:
            self.store.execute("opportunity_sync/upsert_state", row, connection)
            if note is not None:
                self.store.execute(
                    "opportunity_sync/delete_pending",
                    {"opportunity_id": opportunity.id, "kind": "note", "effect_id": note.change_id},
                    connection,
                )
            if owes_writeback:
                self.store.execute(
                    "opportunity_sync/upsert_pending",
                    {**self._writeback_row(opportunity.id, str(url)), "updated_at": clock.now_iso()},
                    connection,
                )
        states[opportunity.id] = row
        counter = COUNTERS[action.kind]
        self.summary.add(counter)
        detail = f"issue #{issue['iid']}" + (
            f"; {'; '.join(f'{c.field} changed' for c in action.changes)}" if action.changes else ""
        )
        self._audit(opportunity.id, counter, detail)

    def _writeback_row(self, opportunity_id: str, url: str) -> dict[str, Any]:
        field = self.config.writeback_field
        return {
            "opportunity_id": opportunity_id,
            "kind": "writeback",
            "effect_id": url,
            "payload_json": json.dumps({"field": field, "url": url}, sort_keys=True),
        }

    def _owed_writeback(self, action: Action, states: dict[str, Any]) -> list[dict[str, Any]]:
        """An unchanged, won opportunity whose field lacks its issue URL (lost before, or cleared)."""
        url = (states.get(action.opportunity.id) or {}).get("issue_url")
        if not (self.config.writeback_field and url and action.opportunity.won):
            return []
        if action.opportunity.issue_url_field == url:
            return []
        return [self._writeback_row(action.opportunity.id, url)]

    def _adopt_if_needed(self, action: Action, states: dict[str, Any]) -> None:
        row = states.get(action.opportunity.id)
        if row is None or row.get("status") != ("flagged" if row.get("flagged") else "synced"):
            self._save(action, states, status="flagged" if (row or {}).get("flagged") else "synced")

    def _save(
        self, action: Action, states: dict[str, Any], status: str, issue_url: str | None = None
    ) -> dict[str, Any]:
        row = self._row(action, states, status, issue_url)
        self.store.execute("opportunity_sync/upsert_state", row)
        states[action.opportunity.id] = row
        return row

    def _row(self, action: Action, states: dict[str, Any], status: str, issue_url: str | None = None) -> dict[str, Any]:
        opportunity, content = action.opportunity, action.content
        previous = dict(states.get(opportunity.id) or {})
        flagged = {"flagged": 1, "synced": 0}.get(status, previous.get("flagged", 0))
        row = {
            "opportunity_id": opportunity.id,
            "project": self.config.project,
            "issue_iid": action.issue_iid if action.issue_iid is not None else previous.get("issue_iid"),
            "issue_url": issue_url or previous.get("issue_url"),
            "status": status,
            "flagged": flagged,
            "content_hash": content.content_hash() if content and status == "synced" else previous.get("content_hash"),
            "snapshot_json": json.dumps(snapshot(opportunity), sort_keys=True)
            if status != "creating"
            else previous.get("snapshot_json"),
            "labels_json": json.dumps(list(content.labels))
            if content and status == "synced"
            else previous.get("labels_json"),
            "title": content.title if content and status == "synced" else previous.get("title"),
            "due_date": content.due_date if content and status == "synced" else previous.get("due_date"),
            "last_modstamp": opportunity.modstamp,
            "failure_reason": None,
            "failure_count": 0,
            "quarantined": previous.get("quarantined", 0),
            "quarantine_reason": previous.get("quarantine_reason"),
            "last_run_id": self.run_id,
            "updated_at": clock.now_iso(),
        }
        if status == "creating":
            row["issue_iid"] = None
        return row

    def _fail(
        self,
        record_id: str,
        system: str,
        reason: str,
        field_name: str | None,
        states: dict[str, Any],
        action: Action | None = None,
    ) -> None:
        failure = RecordFailure(system, f"Opportunity {record_id}", reason, field_name)
        self.summary.fail(failure)
        self._audit(record_id, "failed", failure.describe())
        if self.dry_run:
            return
        previous = dict(states.get(record_id) or {})
        row = {
            **{
                key: previous.get(key)
                for key in (
                    "issue_iid",
                    "issue_url",
                    "content_hash",
                    "snapshot_json",
                    "labels_json",
                    "title",
                    "due_date",
                    "last_modstamp",
                    "quarantine_reason",
                )
            },
            "opportunity_id": record_id,
            "project": self.config.project,
            "status": "failed" if previous.get("status") != "creating" else "creating",
            "flagged": previous.get("flagged", 0),
            "failure_reason": f"{system}: {reason}" + (f" (field {field_name})" if field_name else ""),
            "failure_count": int(previous.get("failure_count") or 0) + 1,
            "quarantined": previous.get("quarantined", 0),
            "last_run_id": self.run_id,
            "updated_at": clock.now_iso(),
        }
        self.store.execute("opportunity_sync/upsert_state", row)
        states[record_id] = row

    def _audit(self, record_id: str, action: str, detail: str) -> None:
        if self.dry_run:
            return
        self.store.execute(
            "platform/record_audit",
            {
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "record_id": record_id,
                "action": action,
                "detail": detail,
                "recorded_at": clock.now_iso(),
            },
        )

    def _report(self, actions: list[Action], quarantined: set[str], states: dict[str, Any]) -> None:
        if self.summary.failures:
            # Short whatever the count: the first few by name, the rest where to find them.
            named = ", ".join(
                f"{failure.record.removeprefix('Opportunity ')} ({failure.system}"
                + (f" {failure.field}" if failure.field else "")
                + ")"
                for failure in self.summary.failures[:FAILURES_NAMED_IN_SUMMARY]
            )
            rest = len(self.summary.failures) - FAILURES_NAMED_IN_SUMMARY
            more = f" and {rest} more" if rest > 0 else ""
            self.summary.note(f"failed: {named}{more} (every one with its reason in the task log and the state store)")
        if quarantined:
            listed = ", ".join(
                f"{key} ({states[key].get('quarantine_reason') or 'no reason given'})" for key in sorted(quarantined)
            )
            self.summary.note(f"quarantined {len(quarantined)}: {listed}")
            for action in actions:
                if action.kind == "quarantined":
                    self._audit(action.opportunity.id, "quarantined", action.reason)
        usage = self.salesforce.api_usage
        if usage is not None:
            text = usage.describe()
            if usage.percent > API_USAGE_WARNING_PERCENT:
                text = f"WARNING {text}, above {API_USAGE_WARNING_PERCENT}%"
                log.warning(text)
            self.summary.note(text)


def apply_operator_requests(
    store: Any, project: str, quarantine: list[str], release: list[str], reason: str | None
) -> list[str]:
    """Quarantine or release opportunities from the trigger form; returns what was done."""
    done = []
    for record_id in quarantine:
        store.execute(
            "opportunity_sync/set_quarantine",
            {
                "opportunity_id": _soql_id(record_id),
                "project": project,
                "quarantined": 1,
                "quarantine_reason": reason or "quarantined by an operator",
                "updated_at": clock.now_iso(),
            },
        )
        done.append(f"quarantined {record_id}")
    for record_id in release:
        store.execute(
            "opportunity_sync/set_quarantine",
            {
                "opportunity_id": _soql_id(record_id),
                "project": project,
                "quarantined": 0,
                "quarantine_reason": None,
                "updated_at": clock.now_iso(),
            },
        )
        done.append(f"released {record_id}")
    return done


def _soql_id(value: str) -> str:
    value = str(value).strip()
    if not value.isalnum() or len(value) not in (15, 18):
        raise ValueError(f"not a Salesforce record id: {value!r}")
    return value


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def resolve_window(
    params: dict[str, Any],
    interval_start: datetime | None,
    interval_end: datetime | None,
    overlap_minutes: int,
    now: datetime,
) -> Window | None:
    """The SystemModstamp window of a run: ``since``/``until`` params, else the data interval
    widened by the overlap, else (a manual run with neither) the last day."""
    since, until = params.get("since"), params.get("until")
    if since or until:
        start = _parse_time(since) if since else datetime(2000, 1, 1, tzinfo=UTC)
        end = _parse_time(until) if until else now
        if start >= end:
            raise ValueError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
        return Window(start, end)
    if params.get("opportunity_ids"):
        return None
    if interval_start is not None and interval_end is not None and interval_end > interval_start:
        return Window(interval_start - timedelta(minutes=overlap_minutes), interval_end)
    return Window(now - timedelta(days=1), now)


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
