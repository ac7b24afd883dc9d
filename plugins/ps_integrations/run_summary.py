"""The one-line run summary every DAG's last task returns and logs.

Pure: no Airflow imports, so domain code and tests can build summaries too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STANDARD_COUNTS = ("read", "created", "updated", "unchanged", "failed")


@dataclass(frozen=True)
class RecordFailure:
    """A record that could not be processed: which one, where, and why."""

    system: str
    record: str
    reason: str
    field: str | None = None

    def describe(self) -> str:
        where = f"{self.system} {self.record}"
        if self.field:
            where += f" field {self.field}"
        return f"{where}: {self.reason}"


@dataclass
class RunSummary:
    """Counts of what a run did, plus failures and notes (warnings, API usage...)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STANDARD_COUNTS, 0))
    failures: list[RecordFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount

    def fail(self, failure: RecordFailure) -> None:
        self.failures.append(failure)
        self.add("failed")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def line(self) -> str:
        """``read 412, created 3, updated 5, unchanged 404, failed 0`` plus any notes."""
        text = ", ".join(f"{key} {value}" for key, value in self.counts.items())
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text

    def to_dict(self) -> dict:
        return {
            "summary": self.line(),
            "counts": dict(self.counts),
            "failures": [asdict(failure) for failure in self.failures],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunSummary:
        summary = cls(counts=dict(data.get("counts", {})), notes=list(data.get("notes", [])))
        summary.failures.extend(RecordFailure(**failure) for failure in data.get("failures", []))
        return summary
