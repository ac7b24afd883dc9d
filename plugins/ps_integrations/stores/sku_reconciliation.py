"""What the SKU reconciliation keeps between runs: the problems found per ``as_of`` (to report what is
new and what was resolved), the finance issue's iid, and which finance mails went out.

SQL lives in ``include/sql/sku_reconciliation/``; the job sees only the records below.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from ps_integrations import clock
from ps_integrations.domain.sku_reconciliation import ProblemKey
from ps_integrations.stores.base import SqlStore as BaseSqlStore
from ps_integrations.stores.sent_mail import SentMailLedger

JOB = "ps_sku_reconciliation"
FINANCE_ISSUE_IID = "finance_issue_iid"


class SqlStore(BaseSqlStore, Protocol):
    """The parts of :class:`ps_integrations.state_store.StateStore` this repository uses."""

    def fetch_one(
        self, name: str, params: Mapping[str, Any] | None = None, connection: Any = None
    ) -> dict[str, Any] | None: ...

    def get_value(self, job: str, name: str) -> str | None: ...

    def set_value(self, job: str, name: str, value: str) -> None: ...


@dataclass(frozen=True)
class ReconciliationRun:
    """One reconciliation as recorded: what it was built from and what it found."""

    as_of: date
    services_yml_ref: str | None
    services_yml_blob_id: str | None
    counts: Mapping[str, int]
    export_folder: str
    run_id: str


class ReconciliationLedger:
    """The SKU reconciliation's records in the state store."""

    def __init__(self, store: SqlStore, job: str = JOB) -> None:
        self.store = store
        self.job = job
        self.mail = SentMailLedger(store, job)

    def previous_problems(self, as_of: date) -> frozenset[ProblemKey] | None:
        """The problems of the latest run before ``as_of``; None when there was no earlier run."""
        params = {"as_of": as_of.isoformat()}
        if self.store.fetch_one("sku_reconciliation/earlier_run", params) is None:
            return None
        found = self.store.fetch_all("sku_reconciliation/previous_problems", params)
        return frozenset(ProblemKey(row["item"], row["currency"], row["problem"]) for row in found)

    def record_run(self, run: ReconciliationRun, problems: Iterable[ProblemKey]) -> None:
        """Replace the run of ``run.as_of`` and its problems, in one transaction."""
        as_of = run.as_of.isoformat()
        with self.store.transaction() as connection:
            self.store.execute("sku_reconciliation/clear_problems", {"as_of": as_of}, connection)
            rows = [{"as_of": as_of, **problem._asdict()} for problem in sorted(problems)]
            if rows:
                self.store.execute("sku_reconciliation/insert_problem", rows, connection)
            self.store.execute(
                "sku_reconciliation/record_run",
                {
                    "as_of": as_of,
                    "services_yml_ref": run.services_yml_ref,
                    "services_yml_blob_id": run.services_yml_blob_id,
                    "counts_json": json.dumps(dict(run.counts), sort_keys=True),
                    "export_folder": run.export_folder,
                    "run_id": run.run_id,
                    "updated_at": clock.now_iso(),
                },
                connection,
            )

    def finance_issue_iid(self) -> int | None:
        """The iid of the finance issue this job keeps current, when it has one."""
        value = self.store.get_value(self.job, FINANCE_ISSUE_IID)
        return int(value) if value and value.isdigit() else None

    def remember_finance_issue(self, iid: int) -> None:
        self.store.set_value(self.job, FINANCE_ISSUE_IID, str(iid))
