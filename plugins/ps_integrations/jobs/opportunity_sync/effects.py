"""Effects an earlier run may have left owed: notes recorded as pending but never confirmed (exactly
once: looked for on the issue before anything is posted again) and issue-URL write-backs (retried
every run until Salesforce takes them)."""

from __future__ import annotations

import logging
from dataclasses import replace

from ps_integrations.domain.opportunity_plan import SyncState
from ps_integrations.exceptions import GitLabApiError, SalesforceApiError
from ps_integrations.jobs.opportunity_sync.ports import OpportunitySource, SyncLedger
from ps_integrations.jobs.opportunity_sync.writing import IssueWriter
from ps_integrations.run_summary import RecordFailure, RunSummary

log = logging.getLogger(__name__)


def settle_pending_notes(ledger: SyncLedger, writer: IssueWriter, states: dict[str, SyncState]) -> None:
    """A note recorded as pending but not confirmed: the run that posted it died (or GitLab failed).
    If the issue has a note with its change id, it was posted: record the state it reported."""
    for note in sorted(ledger.pending_notes(), key=lambda pending: pending.opportunity_id):
        try:
            posted = writer.note_posted(note.issue_iid, note.change_id)
        except GitLabApiError as error:
            if error.status != 404:  # a deleted issue has no note to find; otherwise ask again next run
                log.warning(
                    "Could not check the pending note of %s on issue #%s: %s",
                    note.opportunity_id,
                    note.issue_iid,
                    error,
                )
                continue
            posted = False
        if posted:
            previous = states.get(note.opportunity_id) or SyncState(note.opportunity_id, writer.project, "synced")
            state = replace(
                previous,
                project=writer.project,
                issue_iid=note.issue_iid,
                status="flagged" if note.flagged else "synced",
                flagged=note.flagged,
                snapshot=note.snapshot,
                failure_reason=None,
                failure_count=0,
            )
            ledger.save([state])
            states[note.opportunity_id] = state
            ledger.audit(
                note.opportunity_id, "note confirmed", f"issue #{note.issue_iid}: change {note.change_id} was posted"
            )
        ledger.drop_note(note)


def write_back(
    salesforce: OpportunitySource,
    ledger: SyncLedger,
    field: str | None,
    quarantined: set[str],
    summary: RunSummary,
) -> None:
    """Every owed issue-URL write-back, this run's and earlier runs' alike; failures fail the run by name."""
    if not field:
        return
    owed = {w.opportunity_id: w for w in ledger.pending_writebacks() if w.opportunity_id not in quarantined}
    if not owed:
        return
    try:
        results = salesforce.update_records(
            "Opportunity", {key: {writeback.field: writeback.url} for key, writeback in owed.items()}
        )
    except SalesforceApiError as error:
        results = dict.fromkeys(owed, str(error))
    written = 0
    for record_id, problem in sorted(results.items()):
        writeback = owed[record_id]
        if problem:
            reason = f"write-back of the issue URL failed (attempt {writeback.attempts + 1}): {problem}"
            summary.fail(RecordFailure("Salesforce", f"Opportunity {record_id}", reason, writeback.field))
            ledger.audit(record_id, "failed", f"write-back: {problem}")
            ledger.writeback_failed(writeback, str(problem))
        else:
            written += 1
            ledger.writeback_done(writeback)
    summary.add("written back", written)
