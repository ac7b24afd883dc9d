"""The opportunity sync's state: what each opportunity's issue looks like as the sync left it, the
effects owed (a note pending until confirmed on the issue, a write-back until Salesforce took it),
which opportunities a window read, and the audit log. Typed records in and out; the SQL is in
``include/sql/opportunity_sync/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ps_integrations import clock
from ps_integrations.domain.opportunity_plan import SyncState
from ps_integrations.stores.base import SqlStore, record_audit


@dataclass(frozen=True)
class PendingNote:
    """A note recorded before it is posted; its change id is hidden in its body, so a run after a
    crash finds it on the issue instead of posting it twice."""

    opportunity_id: str
    change_id: str
    issue_iid: int
    snapshot: Mapping[str, Any]  # the state the note reports
    flagged: bool


@dataclass(frozen=True)
class PendingWriteback:
    """The issue URL owed to the opportunity's write-back field, retried every run until written."""

    opportunity_id: str
    field: str
    url: str
    attempts: int = 0


def _state(row: Mapping[str, Any]) -> SyncState:
    return SyncState(
        opportunity_id=str(row["opportunity_id"]),
        project=str(row["project"]),
        status=str(row["status"]),
        issue_iid=None if row.get("issue_iid") is None else int(row["issue_iid"]),
        issue_url=row.get("issue_url"),
        flagged=bool(row.get("flagged")),
        content_hash=row.get("content_hash"),
        snapshot=json.loads(row["snapshot_json"]) if row.get("snapshot_json") else None,
        labels=tuple(json.loads(row["labels_json"])) if row.get("labels_json") else None,
        title=row.get("title"),
        due_date=row.get("due_date"),
        last_modstamp=row.get("last_modstamp"),
        failure_reason=row.get("failure_reason"),
        failure_count=int(row.get("failure_count") or 0),
        quarantined=bool(row.get("quarantined")),
        quarantine_reason=row.get("quarantine_reason"),
        last_run_id=row.get("last_run_id"),
        updated_at=row.get("updated_at"),
    )


def _row(state: SyncState, run_id: str, now: str) -> dict[str, Any]:
    return {
        "opportunity_id": state.opportunity_id,
        "project": state.project,
        "issue_iid": state.issue_iid,
        "issue_url": state.issue_url,
        "status": state.status,
        "flagged": int(state.flagged),
        "content_hash": state.content_hash,
        "snapshot_json": None if state.snapshot is None else json.dumps(state.snapshot, sort_keys=True),
        "labels_json": None if state.labels is None else json.dumps(list(state.labels)),
        "title": state.title,
        "due_date": state.due_date,
        "last_modstamp": state.last_modstamp,
        "failure_reason": state.failure_reason,
        "failure_count": state.failure_count,
        "quarantined": int(state.quarantined),
        "quarantine_reason": state.quarantine_reason,
        "last_run_id": run_id,
        "updated_at": now,
    }


def _note_row(note: PendingNote, now: str) -> dict[str, Any]:
    payload = {"iid": note.issue_iid, "snapshot": note.snapshot, "flagged": note.flagged}
    return {
        "opportunity_id": note.opportunity_id,
        "kind": "note",
        "effect_id": note.change_id,
        "payload_json": json.dumps(payload, sort_keys=True),
        "updated_at": now,
    }


def _writeback_row(writeback: PendingWriteback, now: str) -> dict[str, Any]:
    return {
        "opportunity_id": writeback.opportunity_id,
        "kind": "writeback",
        "effect_id": writeback.url,
        "payload_json": json.dumps({"field": writeback.field, "url": writeback.url}, sort_keys=True),
        "updated_at": now,
    }


class OpportunityLedger:
    """The opportunity sync's repository over the state store."""

    def __init__(self, store: SqlStore, dag_id: str, run_id: str) -> None:
        self.store = store
        self.dag_id = dag_id
        self.run_id = run_id

    # --- states -----------------------------------------------------------------------------------
    def states(self) -> dict[str, SyncState]:
        """Every opportunity the sync knows, by id."""
        return {
            state.opportunity_id: state for state in map(_state, self.store.fetch_all("opportunity_sync/all_states"))
        }

    def save(self, states: Sequence[SyncState]) -> None:
        """Upsert states (in one transaction), stamped with this run and now."""
        if states:
            now = clock.now_iso()
            rows = [_row(state, self.run_id, now) for state in states]
            self.store.execute("opportunity_sync/upsert_state", rows)

    def record_write(self, state: SyncState, confirmed: PendingNote | None, owed: PendingWriteback | None) -> None:
        """After a GitLab write, in one transaction: the state, the note confirmed, the write-back owed."""
        now = clock.now_iso()
        with self.store.transaction() as connection:
            self.store.execute("opportunity_sync/upsert_state", _row(state, self.run_id, now), connection)
            if confirmed is not None:
                self.store.execute("opportunity_sync/delete_pending", self._note_key(confirmed), connection)
            if owed is not None:
                self.store.execute("opportunity_sync/upsert_pending", _writeback_row(owed, now), connection)

    def set_quarantine(self, opportunity_id: str, project: str, quarantined: bool, reason: str | None) -> None:
        self.store.execute(
            "opportunity_sync/set_quarantine",
            {
                "opportunity_id": opportunity_id,
                "project": project,
                "quarantined": int(quarantined),
                "quarantine_reason": reason,
                "updated_at": clock.now_iso(),
            },
        )

    # --- what windows read ----------------------------------------------------------------------
    def read_in_window(self, start_key: str, end_key: str) -> list[str]:
        """Opportunities read earlier with a stamp in [start_key, end_key) (fixed-width UTC text)."""
        rows = self.store.fetch_all(
            "opportunity_sync/read_in_window", {"window_start": start_key, "window_end": end_key}
        )
        return [str(row["opportunity_id"]) for row in rows]

    def record_reads(self, stamps: Sequence[tuple[str, str]]) -> None:
        """(opportunity id, stamp key) pairs read by this run."""
        if stamps:
            rows = [{"opportunity_id": key, "modstamp": stamp} for key, stamp in stamps]
            self.store.execute("opportunity_sync/record_read", rows)

    # --- pending effects ---------------------------------------------------------------------------
    def _pending(self) -> Iterator[dict[str, Any]]:
        yield from self.store.fetch_all("opportunity_sync/all_pending")

    def pending_notes(self) -> list[PendingNote]:
        notes = []
        for row in self._pending():
            if row["kind"] != "note":
                continue
            payload = json.loads(row["payload_json"])
            notes.append(
                PendingNote(
                    str(row["opportunity_id"]),
                    str(row["effect_id"]),
                    int(payload["iid"]),
                    payload["snapshot"],
                    bool(payload["flagged"]),
                )
            )
        return notes

    def pending_writebacks(self) -> list[PendingWriteback]:
        writebacks = []
        for row in self._pending():
            if row["kind"] != "writeback":
                continue
            payload = json.loads(row["payload_json"])
            writebacks.append(
                PendingWriteback(
                    str(row["opportunity_id"]), str(payload["field"]), str(payload["url"]), int(row["attempts"] or 0)
                )
            )
        return writebacks

    def add_pending_notes(self, notes: Sequence[PendingNote]) -> None:
        if notes:
            now = clock.now_iso()
            self.store.execute("opportunity_sync/upsert_pending", [_note_row(note, now) for note in notes])

    def owe_writebacks(self, writebacks: Sequence[PendingWriteback]) -> None:
        if writebacks:
            now = clock.now_iso()
            self.store.execute("opportunity_sync/upsert_pending", [_writeback_row(w, now) for w in writebacks])

    def drop_note(self, note: PendingNote) -> None:
        self.store.execute("opportunity_sync/delete_pending", self._note_key(note))

    def writeback_done(self, writeback: PendingWriteback) -> None:
        self.store.execute(
            "opportunity_sync/delete_pending",
            {"opportunity_id": writeback.opportunity_id, "kind": "writeback", "effect_id": writeback.url},
        )

    def writeback_failed(self, writeback: PendingWriteback, error: str) -> None:
        self.store.execute(
            "opportunity_sync/pending_failed",
            {
                "opportunity_id": writeback.opportunity_id,
                "kind": "writeback",
                "last_error": error[:1000],
                "updated_at": clock.now_iso(),
            },
        )

    @staticmethod
    def _note_key(note: PendingNote) -> dict[str, Any]:
        return {"opportunity_id": note.opportunity_id, "kind": "note", "effect_id": note.change_id}

    # --- audit ------------------------------------------------------------------------------------
    def audit(self, record_id: str, action: str, detail: str) -> None:
        record_audit(self.store, self.dag_id, self.run_id, record_id, action, detail)
