"""The opportunity sync job: Salesforce -> GitLab engagement issues, applied from a pure plan.

The DAG calls ``OpportunitySync(...).run(window)``. Decisions live in
``ps_integrations.domain.opportunity_sync``; the steps here move data: read the opportunities, plan,
settle what an earlier run left pending, apply the plan to GitLab (concurrently; the hook paces), write
the issue URLs back to Salesforce and report.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import cached_property

from ps_integrations.domain.opportunity_plan import Action, SyncState, plan
from ps_integrations.domain.opportunity_sync import (
    InvalidRecord,
    IssueContent,
    Opportunity,
    SyncConfig,
    build_content,
    parse_opportunity,
    require_issue_fields,
    snapshot,
)
from ps_integrations.exceptions import GitLabApiError, IntegrationError
from ps_integrations.jobs.opportunity_sync.effects import settle_pending_notes, write_back
from ps_integrations.jobs.opportunity_sync.ports import IssueTracker, OpportunitySource, SyncLedger
from ps_integrations.jobs.opportunity_sync.reading import (
    OpportunityReader,
    block_renderer,
    load_engagement_types,
    soql_id,
    stamp_key,
)
from ps_integrations.jobs.opportunity_sync.writing import IssueWriter, PlannedNote, WrittenIssue, planned_note
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.run_window import RunWindow
from ps_integrations.stores.opportunity_sync import PendingWriteback

log = logging.getLogger(__name__)

API_USAGE_WARNING_PERCENT = 80
FAILURES_NAMED_IN_SUMMARY = 3
WRITE_KINDS = ("create", "update", "flag", "unflag", "note")
COUNTERS = {"create": "created", "update": "updated", "flag": "flagged", "unflag": "unflagged", "note": "noted"}


@dataclass(frozen=True)
class Inputs:
    """What a run read: the opportunities that parsed, their issue contents, the states found."""

    opportunities: list[Opportunity]
    contents: dict[str, IssueContent]
    quarantined: set[str]


class OpportunitySync:
    def __init__(
        self,
        salesforce: OpportunitySource,
        gitlab: IssueTracker,
        ledger: SyncLedger,
        config: SyncConfig,
        dry_run: bool = False,
    ) -> None:
        self.salesforce = salesforce
        self.gitlab = gitlab
        gitlab.pace(config.gitlab_requests_per_minute, config.gitlab_notes_per_minute)
        self.ledger = ledger
        self.config = config
        self.dry_run = dry_run
        self.summary = RunSummary()
        self.types = load_engagement_types()
        self.render = block_renderer()
        self.reader = OpportunityReader(salesforce, config.writeback_field, config.org_currency, self.summary)
        self.plan_lines: list[str] = []
        self.states: dict[str, SyncState] = {}  # as recorded now; updated as the run records
        self.index_pages = 0

    @cached_property
    def writer(self) -> IssueWriter:
        return IssueWriter(self.gitlab, self.config, dict(self.states), self.summary)

    # --- the run --------------------------------------------------------------------------------------
    def run(self, window: RunWindow | None, opportunity_ids: list[str] | None = None) -> RunSummary:
        self.states = self.ledger.states()
        inputs = self.read(window, list(opportunity_ids or []))
        index = self.marker_index() if self._needs_index(inputs.opportunities) else {}
        if not self.dry_run:
            settle_pending_notes(self.ledger, self.writer, self.states)
        self.writer.previous = dict(self.states)
        actions = plan(inputs.opportunities, self.states, index, inputs.contents, inputs.quarantined)
        if self.dry_run:
            self.log_plan(actions)
        else:
            self.apply(actions)
            write_back(self.salesforce, self.ledger, self.config.writeback_field, inputs.quarantined, self.summary)
        self.report(actions, inputs.quarantined)
        return self.summary

    # --- step 1: read ------------------------------------------------------------------------------
    def read(self, window: RunWindow | None, opportunity_ids: list[str]) -> Inputs:
        """The window's opportunities, the given ones, earlier failures and what this window read
        before (our own write-back moves SystemModstamp), parsed; bad records fail by name."""
        quarantined = {key for key, state in self.states.items() if state.quarantined}
        retry = sorted(
            key
            for key, state in self.states.items()
            if state.status in ("failed", "creating") and not state.quarantined
        )
        read_before = self.ledger.read_in_window(stamp_key(window.start), stamp_key(window.end)) if window else []
        records = self.reader.read(window, opportunity_ids, [*retry, *read_before])
        self.summary.add("read", len(records))
        if not self.dry_run:
            self.ledger.record_reads(_stamps(records))
        opportunities = []
        for record in records:
            try:
                opportunity = parse_opportunity(record, self.config.writeback_field, self.config.org_currency)
                if opportunity.won:
                    require_issue_fields(opportunity)
                opportunities.append(opportunity)
            except InvalidRecord as error:
                self.fail(error.record_id, "Salesforce", error.reason, error.field)
        contents = {o.id: self._content(o) for o in opportunities if o.won}
        unknown = sorted({sku for content in contents.values() for sku in content.unknown_skus})
        if unknown:
            self.summary.note(f"unknown SKUs (labelled {self.config.unknown_sku_label}): {', '.join(unknown)}")
        return Inputs(opportunities, contents, quarantined)

    @cached_property
    def _salesforce_base(self) -> str:
        return self.salesforce.record_url_base()

    def _content(self, opportunity: Opportunity) -> IssueContent:
        url = f"{self._salesforce_base}/lightning/r/Opportunity/{opportunity.id}/view"
        return build_content(opportunity, self.types, self.config, self.render, url)

    def _needs_index(self, opportunities: list[Opportunity]) -> bool:
        """Whether an opportunity that may have an issue has none recorded (first sync, or lost state)."""
        return any(
            (state := self.states.get(o.id)) is None or state.issue_iid is None
            for o in opportunities
            if o.won or o.id in self.states
        )

    def marker_index(self) -> dict[str, int]:
        """Opportunity id -> issue iid from the markers in the project's issues (see IssueWriter)."""
        index, self.index_pages = self.writer.marker_index()
        return index

    # --- step 2: apply ------------------------------------------------------------------------------
    def apply(self, actions: list[Action]) -> None:
        """Record what needs no write; record creates and notes as pending; then write, concurrently."""
        writes = [action for action in actions if action.kind in WRITE_KINDS]
        self._record_unwritten([action for action in actions if action.kind not in WRITE_KINDS])
        # Recorded before the POSTs, in one transaction: a crash after a POST leaves "creating",
        # which the next run resolves through the marker index instead of creating a second issue.
        creating = [self._state(action, "creating") for action in writes if action.kind == "create"]
        self._save(creating)
        # Likewise every note is pending before it is posted; its change id is hidden in its body, so
        # a run after a crash finds it on the issue instead of posting it twice.
        notes = {
            action.opportunity.id: note
            for action in writes
            if (note := planned_note(action, self.states.get(action.opportunity.id), self.config.reopened_label))
        }
        self.ledger.add_pending_notes([note.pending for note in notes.values()])
        if creating:
            _ = self.writer.coordinator_id  # looked up once, before the workers share it
        workers = max(1, min(self.config.concurrency, len(writes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gitlab") as pool:
            futures = {
                pool.submit(self.writer.write, action, notes.get(action.opportunity.id)): action for action in writes
            }
            for future in as_completed(futures):
                action = futures[future]
                try:
                    issue = future.result()
                except (GitLabApiError, IntegrationError) as error:
                    self.fail(action.opportunity.id, "GitLab", str(error), None)
                    continue
                self.record_write(action, issue, notes.get(action.opportunity.id))

    def _record_unwritten(self, actions: list[Action]) -> None:
        """Unchanged, skipped and quarantined: counted; an unchanged one adopted and its write-back owed."""
        owed = []
        for action in actions:
            self.summary.add("not won" if action.kind == "skipped" else action.kind)
            if action.kind != "unchanged":
                continue
            self.ledger.audit(action.opportunity.id, "unchanged", f"issue #{action.issue_iid}")
            state = self.states.get(action.opportunity.id)
            expected = "flagged" if state and state.flagged else "synced"
            if state is None or state.status != expected:
                self._save([self._state(action, expected)])
            owed.extend(self._owed_writeback(action))
        self.ledger.owe_writebacks(owed)

    def _owed_writeback(self, action: Action) -> list[PendingWriteback]:
        """An unchanged, won opportunity whose field lacks its issue URL (lost before, or cleared)."""
        state = self.states.get(action.opportunity.id)
        url = state.issue_url if state else None
        field = self.config.writeback_field
        if not (field and url and action.opportunity.won) or action.opportunity.issue_url_field == url:
            return []
        return [PendingWriteback(action.opportunity.id, field, url)]

    def record_write(self, action: Action, issue: WrittenIssue, note: PlannedNote | None) -> None:
        """One transaction: the state, the note confirmed and the write-back owed are recorded together."""
        opportunity = action.opportunity
        action.issue_iid = issue.iid
        flagged = action.kind in ("flag", "note")
        state = self._state(action, "flagged" if flagged else "synced", issue.web_url)
        field, url = self.config.writeback_field, state.issue_url
        owes = bool(
            field and url and opportunity.issue_url_field != url and action.kind in ("create", "update", "unflag")
        )
        owed = PendingWriteback(opportunity.id, field, url) if owes and field and url else None
        self.ledger.record_write(state, note.pending if note else None, owed)
        self.states[opportunity.id] = state
        counter = COUNTERS[action.kind]
        self.summary.add(counter)
        changed = f"; {'; '.join(f'{c.field} changed' for c in action.changes)}" if action.changes else ""
        self.ledger.audit(opportunity.id, counter, f"issue #{issue.iid}{changed}")

    def _save(self, states: list[SyncState]) -> None:
        self.ledger.save(states)
        self.states.update({state.opportunity_id: state for state in states})

    def _state(self, action: Action, status: str, issue_url: str | None = None) -> SyncState:
        """The state after an action: content fields only once synced, the snapshot unless creating."""
        opportunity, content = action.opportunity, action.content
        previous = self.states.get(opportunity.id) or SyncState(opportunity.id, self.config.project, status)
        synced = content is not None and status == "synced"
        return replace(
            previous,
            project=self.config.project,
            status=status,
            issue_iid=None if status == "creating" else (action.issue_iid or previous.issue_iid),
            issue_url=issue_url or previous.issue_url,
            flagged={"flagged": True, "synced": False}.get(status, previous.flagged),
            content_hash=content.content_hash() if synced and content else previous.content_hash,
            snapshot=previous.snapshot if status == "creating" else snapshot(opportunity),
            labels=tuple(content.labels) if synced and content else previous.labels,
            title=content.title if synced and content else previous.title,
            due_date=content.due_date if synced and content else previous.due_date,
            last_modstamp=opportunity.modstamp,
            failure_reason=None,
            failure_count=0,
        )

    def fail(self, record_id: str, system: str, reason: str, field_name: str | None) -> None:
        """A record that failed: named in the summary, kept for a retry (a pending create stays pending)."""
        failure = RecordFailure(system, f"Opportunity {record_id}", reason, field_name)
        self.summary.fail(failure)
        if self.dry_run:
            return
        self.ledger.audit(record_id, "failed", failure.describe())
        previous = self.states.get(record_id) or SyncState(record_id, self.config.project, "failed")
        state = replace(
            previous,
            project=self.config.project,
            status="creating" if previous.status == "creating" else "failed",
            failure_reason=f"{system}: {reason}" + (f" (field {field_name})" if field_name else ""),
            failure_count=previous.failure_count + 1,
        )
        self._save([state])

    # --- dry run and report --------------------------------------------------------------------------
    def log_plan(self, actions: list[Action]) -> None:
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

    def report(self, actions: list[Action], quarantined: set[str]) -> None:
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
                f"{key} ({self.states[key].quarantine_reason or 'no reason given'})" for key in sorted(quarantined)
            )
            self.summary.note(f"quarantined {len(quarantined)}: {listed}")
            if not self.dry_run:
                for action in actions:
                    if action.kind == "quarantined":
                        self.ledger.audit(action.opportunity.id, "quarantined", action.reason)
        usage = self.salesforce.api_usage
        if usage is not None:
            text = usage.describe()
            if usage.percent > API_USAGE_WARNING_PERCENT:
                text = f"WARNING {text}, above {API_USAGE_WARNING_PERCENT}%"
                log.warning(text)
            self.summary.note(text)


def _stamps(records: list[dict]) -> list[tuple[str, str]]:
    stamps = []
    for record in records:
        try:
            stamps.append((str(record["Id"]), stamp_key(record["SystemModstamp"])))
        except (KeyError, TypeError, ValueError):
            continue  # a record without a usable stamp fails by name when parsed
    return stamps


def apply_operator_requests(
    ledger: SyncLedger, project: str, quarantine: list[str], release: list[str], reason: str | None
) -> list[str]:
    """Quarantine or release opportunities from the trigger form; returns what was done."""
    done = []
    for record_id in quarantine:
        ledger.set_quarantine(soql_id(record_id), project, True, reason or "quarantined by an operator")
        done.append(f"quarantined {record_id}")
    for record_id in release:
        ledger.set_quarantine(soql_id(record_id), project, False, None)
        done.append(f"released {record_id}")
    return done
