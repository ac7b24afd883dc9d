"""The end state of a sequence, read the same way for every DAG, and the invariants against the
reference run's end state.

End state: GitLab issues (keyed by the opportunity marker, else project and title) with their
labels, state, description and notes; Salesforce write-backs (as the issue they point at); mails by
recipients and subject (failure alerts left out); export bytes; the state store's records and the
last run summary of the DAG.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from ps_integrations.domain.opportunity_sync import find_marker
from sandbox.core.server import SandboxServer
from scripts.chaos.targets import ALERT_RECIPIENT, WRITEBACK_FIELD, Target

IssueKey = str
MailKey = tuple[str, str]


@dataclass(frozen=True)
class EndState:
    issues: dict[IssueKey, list[tuple[Any, ...]]]  # one entry per issue found under the key
    notes: dict[IssueKey, list[str]]
    writebacks: dict[str, str]
    filings: Counter[tuple[str, str]]  # (opportunity, "file <title> v<n>" | "post <first words>") in Salesforce
    mails: Counter[MailKey]
    exports: dict[str, str]  # path -> sha256
    records: dict[str, tuple[str, tuple[Any, ...]]]  # key -> (name, compared columns)
    in_flight: dict[str, str]  # key -> name of records left creating/sending
    summary: str
    clean_run_succeeded: bool


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    duplicates: int = 0
    lost: int = 0
    held_for_operator: int = 0

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


def read_end_state(
    sandbox: SandboxServer, target: Target, state_uri: str, exports_dir: Path, clean_run_succeeded: bool
) -> EndState:
    issues, notes, url_to_key = _gitlab(sandbox)
    records, in_flight, summary = _state_store(target, state_uri)
    return EndState(
        issues=issues,
        notes=notes,
        writebacks=_writebacks(sandbox, url_to_key),
        filings=_filings(sandbox),
        mails=Counter(
            (",".join(sorted(mail["rcpt_tos"])), str(mail["subject"]))
            for mail in sandbox.smtp.store.all()
            if ALERT_RECIPIENT not in mail["rcpt_tos"]
        ),
        exports={
            str(path.relative_to(exports_dir)): _digest(path)
            for path in sorted(exports_dir.rglob("*"))
            if path.is_file()
        },
        records=records,
        in_flight=in_flight,
        summary=summary,
        clean_run_succeeded=clean_run_succeeded,
    )


def _digest(path: Path) -> str:
    """sha256 of the bytes - of a ``manifest.json`` without its ``*_at`` moments (when the run
    fetched its inputs or wrote the files: later in every run by design, not content)."""
    content = path.read_bytes()
    if path.name == "manifest.json":
        content = json.dumps(_without_moments(json.loads(content)), sort_keys=True).encode()
    return hashlib.sha256(content).hexdigest()


def _without_moments(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_moments(item) for key, item in value.items() if not str(key).endswith("_at")}
    if isinstance(value, list):
        return [_without_moments(item) for item in value]
    return value


# GitLab names an upload /uploads/<32 random hex>/<file>: the same file uploaded again (a retry after a
# failed issue create) has another link, so links compare without the secret.
UPLOAD_SECRET = re.compile(r"/uploads/[0-9a-f]{32}/")


def _without_upload_secrets(text: str) -> str:
    return UPLOAD_SECRET.sub("/uploads/<secret>/", text or "")


def _gitlab(sandbox: SandboxServer) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[str]], dict[str, str]]:
    gitlab: Any = sandbox.standin("gitlab")
    backend = gitlab.backend
    issues: dict[str, list[tuple[Any, ...]]] = {}
    notes: dict[str, list[str]] = {}
    url_to_key: dict[str, str] = {}
    with backend.lock:
        notes_by_issue: dict[int, list[str]] = {}
        for note in sorted(backend.notes.values(), key=lambda note: note.id):
            if not note.system:
                notes_by_issue.setdefault(note.issue_id, []).append(_without_upload_secrets(note.body))
        for issue in sorted(backend.issues.values(), key=lambda issue: issue.id):
            marker = find_marker(issue.description)
            key = f"opportunity {marker}" if marker else f"{backend.projects[issue.project_id].path}: {issue.title}"
            description = _without_upload_secrets(issue.description)
            content = (issue.title, tuple(sorted(issue.labels)), issue.state, description, issue.due_date)
            issues.setdefault(key, []).append(content)
            notes.setdefault(key, []).extend(notes_by_issue.get(issue.id, []))
            url_to_key[backend.issue_url(issue)] = key
    return issues, notes, url_to_key


def _writebacks(sandbox: SandboxServer, url_to_key: dict[str, str]) -> dict[str, str]:
    salesforce: Any = sandbox.standin("salesforce")
    backend = salesforce.backend
    return {
        opportunity_id: url_to_key.get(str(opportunity[WRITEBACK_FIELD]), str(opportunity[WRITEBACK_FIELD]))
        for opportunity_id, opportunity in backend.records.get("Opportunity", {}).items()
        if opportunity.get(WRITEBACK_FIELD)
    }


def _filings(sandbox: SandboxServer) -> Counter[tuple[str, str]]:
    """Files (every version) and Chatter posts on Salesforce records, as the close-out files them."""
    salesforce: Any = sandbox.standin("salesforce")
    records = salesforce.backend.records
    found: Counter[tuple[str, str]] = Counter()
    for version in records.get("ContentVersion", {}).values():
        parent = str(version.get("FirstPublishLocationId") or version.get("ContentDocumentId") or "")
        found[(parent, f"file {version.get('Title')} v{version.get('VersionNumber')}")] += 1
    for item in records.get("FeedItem", {}).values():
        words = " ".join(str(item.get("Body") or "").split()[:12])
        found[(str(item.get("ParentId") or ""), f"post {words}")] += 1
    return found


def _state_store(target: Target, state_uri: str) -> tuple[dict[str, tuple[str, tuple[Any, ...]]], dict[str, str], str]:
    engine = create_engine(state_uri)
    records: dict[str, tuple[str, tuple[Any, ...]]] = {}
    in_flight: dict[str, str] = {}
    try:
        with engine.connect() as connection:
            for spec in target.records:
                try:
                    rows = [dict(row._mapping) for row in connection.execute(text(spec.sql))]
                except (OperationalError, ProgrammingError):
                    continue  # the run never got as far as creating the table
                for row in rows:
                    key, name = str(row.pop("key")), str(row.pop("name"))
                    records[key] = (name, tuple(row.values()))
                    if set(map(str, row.values())) & spec.in_flight:
                        in_flight[key] = name
            try:
                summary_row = connection.execute(
                    text(
                        "SELECT summary, counts_json FROM job_runs WHERE dag_id = :dag_id "
                        "ORDER BY finished_at DESC, run_id DESC"
                    ),
                    {"dag_id": target.dag_id},
                ).first()
            except (OperationalError, ProgrammingError):
                summary_row = None
    finally:
        engine.dispose()
    return records, in_flight, _summary_text(summary_row)


def _summary_text(row: Any) -> str:
    """The run's summary line and the records its failures name (a run fails naming what it holds for
    the operator, e.g. an interrupted survey send: its failures list, not the counts line, names it)."""
    if not row:
        return ""
    try:
        failures = json.loads(row[1] or "{}").get("failures") or []
    except ValueError:
        failures = []
    named = [f"{failure.get('record')}: {failure.get('reason')}" for failure in failures if isinstance(failure, dict)]
    return "; ".join([str(row[0]), *named])


def check(reference: EndState, actual: EndState) -> Verdict:
    """Every invariant of ``actual`` against ``reference``; counts duplicates and lost items."""
    verdict = Verdict()
    held = {name for name in actual.in_flight.values() if name in actual.summary}
    verdict.held_for_operator = len(held)

    doubled = [key for key, found in actual.issues.items() if len(found) > len(reference.issues.get(key, []))]
    extra_issues = sum(max(len(found) - len(reference.issues.get(key, [])), 0) for key, found in actual.issues.items())
    missing_issues = sorted(set(reference.issues) - set(actual.issues))
    differing = sorted(
        key
        for key in set(reference.issues) & set(actual.issues)
        if set(map(repr, actual.issues[key])) != set(map(repr, reference.issues[key]))  # duplicates: above
    )
    verdict.checks.append(
        Check(
            "one issue per record",
            extra_issues == 0,
            _listing("a second issue for", doubled),
        )
    )
    verdict.checks.append(
        Check(
            "no lost or extra issue",
            not missing_issues and set(actual.issues) <= set(reference.issues),
            _listing("lost", missing_issues) + _listing(" extra", sorted(set(actual.issues) - set(reference.issues))),
        )
    )
    verdict.checks.append(
        Check(
            "issues as in the reference",
            not differing,
            _listing("differ", differing)
            + (f"; first: {_issue_difference(reference, actual, differing[0])}" if differing else ""),
        )
    )

    extra_notes, missing_notes, note_keys = 0, 0, []
    for key in set(reference.notes) | set(actual.notes):
        want, have = Counter(reference.notes.get(key, [])), Counter(actual.notes.get(key, []))
        if want != have:
            note_keys.append(key)
            extra_notes += sum((have - want).values())
            missing_notes += sum((want - have).values())
    verdict.checks.append(
        Check(
            "one note per real change",
            not note_keys,
            f"{extra_notes} extra, {missing_notes} missing; " + _listing("on", sorted(note_keys)) if note_keys else "",
        )
    )

    writebacks_missing = sorted(
        key for key, value in reference.writebacks.items() if actual.writebacks.get(key) != value
    )
    verdict.checks.append(
        Check("every write-back done", not writebacks_missing, _listing("not done", writebacks_missing))
    )

    extra_filings = sum((actual.filings - reference.filings).values())
    lost_filings = sum((reference.filings - actual.filings).values())
    verdict.checks.append(
        Check(
            "one Salesforce file and post per close",
            extra_filings == 0,
            _listing("filed again", sorted(actual.filings - reference.filings)),
        )
    )
    verdict.checks.append(
        Check(
            "no lost Salesforce file or post",
            lost_filings <= len(held),
            _listing("not filed", sorted(reference.filings - actual.filings)),
        )
    )

    extra_mails = sum((actual.mails - reference.mails).values())
    lost_mails = reference.mails - actual.mails
    # a mail whose send was interrupted is held for the operator (the run names it): not lost
    unexplained_lost = sum(lost_mails.values()) - min(sum(lost_mails.values()), len(held))
    verdict.checks.append(
        Check("one mail per version", extra_mails == 0, _listing("sent again", sorted(actual.mails - reference.mails)))
    )
    verdict.checks.append(Check("no lost mail", unexplained_lost == 0, _listing("lost", sorted(lost_mails))))
    second = sorted(
        recipients
        for recipients, count in Counter(key[0] for key in actual.mails.elements()).items()
        if count > Counter(key[0] for key in reference.mails.elements())[recipients]
    )
    verdict.checks.append(Check("no second survey or mail to anyone", not second, _listing("to", second)))

    differing_files = sorted(
        path
        for path in set(reference.exports) | set(actual.exports)
        if reference.exports.get(path) != actual.exports.get(path)
    )
    verdict.checks.append(Check("exports byte-identical", not differing_files, _listing("differ", differing_files)))

    lost_records = sorted(set(reference.records) - set(actual.records))
    extra_records = sorted(set(actual.records) - set(reference.records))
    differing_records = sorted(
        key
        for key in set(reference.records) & set(actual.records)
        # the name (e.g. a survey id) is drawn anew in every run; the compared columns are what counts
        if actual.records[key][1] != reference.records[key][1] and key not in actual.in_flight
    )
    verdict.checks.append(
        Check(
            "no lost or extra record",
            not (lost_records or extra_records or differing_records),
            _listing("lost", lost_records) + _listing(" extra", extra_records) + _listing(" differ", differing_records),
        )
    )
    unnamed = sorted(name for name in actual.in_flight.values() if name not in held)
    verdict.checks.append(
        Check("nothing in flight without a named reason", not unnamed, _listing("creating/sending, unnamed", unnamed))
    )
    verdict.checks.append(
        Check(
            "clean run succeeds (or names what it holds)",
            actual.clean_run_succeeded or bool(held) or not reference.clean_run_succeeded,
            f"summary: {actual.summary[:300]}",
        )
    )

    verdict.duplicates = extra_issues + extra_notes + extra_mails + extra_filings
    verdict.lost = (
        len(missing_issues)
        + missing_notes
        + unexplained_lost
        + len(writebacks_missing)
        + max(lost_filings - len(held), 0)
        + len(lost_records)
        + len(set(reference.exports) - set(actual.exports))
    )
    return verdict


ISSUE_FIELDS = ("title", "labels", "state", "description", "due date")


def _issue_difference(reference: EndState, actual: EndState, key: str) -> str:
    """Which fields of the issue under ``key`` differ, with the first differing description line."""
    want, have = reference.issues[key][0], actual.issues[key][0]
    parts = []
    for name, old, new in zip(ISSUE_FIELDS, want, have, strict=True):
        if old == new:
            continue
        if name == "description":
            pairs = zip(str(old).splitlines(), str(new).splitlines(), strict=False)
            line = next(((a, b) for a, b in pairs if a != b), ("(shorter)", "(longer)"))
            parts.append(f"description line {line[0][:120]!r} is {line[1][:120]!r}")
        else:
            parts.append(f"{name} {old!r} is {new!r}")
    return "; ".join(parts)


def _listing(label: str, items: Iterable[Any], limit: int = 5) -> str:
    items = list(items)
    if not items:
        return ""
    shown = ", ".join(map(str, items[:limit])) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
    return f"{label}: {shown}"
