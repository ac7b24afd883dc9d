"""The SKU reconciliation's orchestration against small in-memory fakes of its Protocols (#16).

The sandbox and DAG-run tests (tests/dags/test_sku_reconciliation.py) prove the wire; these prove
the story: which issue is opened, updated, closed or reopened, which notes and mails go out, what is
recorded - also after a crash between a remote write and its record.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from ps_integrations.domain.services_catalog import CatalogSyntaxError
from ps_integrations.domain.sku_reconciliation import ProblemKey
from ps_integrations.exceptions import ConfigurationError, GitLabApiError, GitLabNotFoundError
from ps_integrations.exports import ExportFile
from ps_integrations.hooks.gitlab import GitLabIssue, GitLabNote, RepositoryFile
from ps_integrations.jobs.sku_reconciliation import ReconciliationConfig, SkuReconciliation
from ps_integrations.jobs.sku_reconciliation.finance_issue import ISSUE_MARKER
from ps_integrations.stores.sent_mail import SentMailLedger
from ps_integrations.stores.sku_reconciliation import JOB, ReconciliationRun

AS_OF = date(2026, 11, 21)
FETCHED = datetime(2026, 11, 21, 6, tzinfo=UTC)
FINANCE = "professional-services/finance"
CATALOG = "professional-services/services-catalog"
SERVICES_YML = "- id: svc-a\n  name: Service A\n  sku: SVC-A\n  price: 100\n"


# --- fakes ---------------------------------------------------------------------------------------------
class FakeZuora:
    endpoint = "https://zuora.example/apps/services/a/78.0"

    def __init__(self, price: str = "100") -> None:
        self.records: dict[str, list[dict[str, Any]]] = {
            "Product": [{"Id": "p1", "Name": "Service A", "SKU": "SVC-A", "EffectiveStartDate": "2020-01-01"}],
            "ProductRatePlan": [{"Id": "rp1", "ProductId": "p1", "EffectiveStartDate": "2020-01-01"}],
            "ProductRatePlanCharge": [{"Id": "c1", "ProductRatePlanId": "rp1"}],
            "ProductRatePlanChargeTier": [
                {"Id": "t1", "ProductRatePlanChargeId": "c1", "Currency": "USD", "Price": price, "Tier": 1}
            ],
        }

    def query(self, zoql: str, batch_size: int | None = None) -> Iterator[dict[str, Any]]:
        match = re.search(r"from (\w+)$", zoql)
        assert match is not None
        yield from self.records[match.group(1)]


class FakeGitLab:
    def __init__(self, services_yml: str = SERVICES_YML) -> None:
        self.files = {(CATALOG, "data/services.yml", "main"): services_yml}
        self.issues: dict[int, GitLabIssue] = {}
        self.notes: dict[int, list[str]] = {}
        self.fail_with: GitLabApiError | None = None

    def get_file(self, project: str, path: str, ref: str) -> RepositoryFile:
        if (project, path, ref) not in self.files:
            raise GitLabNotFoundError(404, f"GET /projects/{project}/repository/files/{path}", "404 File Not Found")
        return RepositoryFile(path, ref, self.files[(project, path, ref)], "b" * 40, "c" * 40)

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def list_issues(
        self, project: str, *, state: str = "all", labels: tuple[str, ...] = (), order_by: str = "created_at"
    ) -> Iterator[GitLabIssue]:
        self._check()
        for issue in self.issues.values():
            if set(labels) <= set(issue.labels) and state in ("all", issue.state):
                yield issue

    def get_issue(self, project: str, iid: int) -> GitLabIssue:
        self._check()
        if iid not in self.issues:
            raise GitLabNotFoundError(404, f"GET /projects/{project}/issues/{iid}", "404 Not found")
        return self.issues[iid]

    def create_issue(self, project: str, title: str, description: str, *, labels: tuple[str, ...] = ()) -> GitLabIssue:
        self._check()
        iid = len(self.issues) + 1
        self.issues[iid] = GitLabIssue(
            project, iid, 100 + iid, title, description, "opened", labels, f"https://gitlab.example/{project}/-/issues/{iid}",
            "", "", None, None, (), None, False, 0, 0,
        )  # fmt: skip
        return self.issues[iid]

    def update_issue(
        self,
        project: str,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
        state_event: str | None = None,
    ) -> GitLabIssue:
        self._check()
        issue = self.issues[iid]
        state = {"close": "closed", "reopen": "opened", None: issue.state}[state_event]
        self.issues[iid] = dataclasses.replace(
            issue, title=title or issue.title, description=description or issue.description, state=state
        )
        return self.issues[iid]

    def create_note(self, project: str, iid: int, body: str) -> GitLabNote:
        self._check()
        self.notes.setdefault(iid, []).append(body)
        return GitLabNote(len(self.notes[iid]), body, "ps-bot", "", False)


class Values:
    """The state store's job values, in memory; ``crash_on`` raises when a matching value is written."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.crash_on: Callable[[str, str], bool] = lambda _name, _value: False

    def get_value(self, job: str, name: str) -> str | None:
        return self.values.get((job, name))

    def set_value(self, job: str, name: str, value: str) -> None:
        if self.crash_on(name, value):
            raise Killed(name)
        self.values[(job, name)] = value


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no ``except Exception`` catches it)."""


class FakeRecords:
    def __init__(self) -> None:
        self.values = Values()
        self.mail = SentMailLedger(self.values, JOB)
        self.runs: dict[date, tuple[ReconciliationRun, frozenset[ProblemKey]]] = {}

    def previous_problems(self, as_of: date) -> frozenset[ProblemKey] | None:
        earlier = [day for day in self.runs if day < as_of]
        return self.runs[max(earlier)][1] if earlier else None

    def record_run(self, run: ReconciliationRun, problems: Iterable[ProblemKey]) -> None:
        self.runs[run.as_of] = (run, frozenset(problems))

    def finance_issue_iid(self) -> int | None:
        value = self.values.get_value(JOB, "finance_issue_iid")
        return int(value) if value else None

    def remember_finance_issue(self, iid: int) -> None:
        self.values.set_value(JOB, "finance_issue_iid", str(iid))


class FakeExports:
    def __init__(self) -> None:
        self.folders: dict[str, dict[str, bytes]] = {}

    def write_folder(self, folder: str, title: str, files: Iterable[ExportFile]) -> list[str]:
        self.folders[folder] = {f.name: f.content for f in files}
        return sorted(self.folders[folder])


class World:
    """One set of fakes that several runs share, as the real systems outlive a run."""

    def __init__(self, services_yml: str = SERVICES_YML) -> None:
        self.zuora, self.gitlab = FakeZuora(), FakeGitLab(services_yml)
        self.records, self.exports = FakeRecords(), FakeExports()
        self.mails: list[EmailMessage] = []

    def run(self, as_of: date = AS_OF, **config: Any):
        job = SkuReconciliation(
            self.zuora,
            self.gitlab,
            self.records,
            self.exports,
            ReconciliationConfig(**config),
            f"run-{as_of}",
            send=self.mails.append,
        )
        return job.run(as_of, None, FETCHED)

    def mail_text(self, number: int = -1) -> str:
        part = self.mails[number].get_body(("plain",))
        assert part is not None
        return part.get_content()


@pytest.fixture
def world() -> World:
    return World()


# --- the story -----------------------------------------------------------------------------------------
def test_drift_opens_one_issue_exports_records_and_mails_finance_once(world):
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "120"

    summary = world.run()

    [issue] = world.gitlab.issues.values()
    assert issue.labels == ("finance", "sku-reconciliation") and ISSUE_MARKER in issue.description
    assert "| SVC-A | USD | price_mismatch |" in issue.description and issue.state == "opened"
    assert sorted(world.exports.folders["sku_reconciliation/2026-11-21"]) == [
        "manifest.json",
        "reconciliation.csv",
        "reconciliation.xlsx",
    ]
    run, problems = world.records.runs[AS_OF]
    assert problems == {ProblemKey("SVC-A", "USD", "price_mismatch")} and run.counts["price_mismatch"] == 1
    assert run.services_yml_blob_id == "b" * 40 and run.export_folder == "sku_reconciliation/2026-11-21"
    [mail] = world.mails
    assert mail["To"] == "finance@example.com" and ": 1 row(s) need action" in mail["Subject"]
    assert f"Finance issue: {issue.web_url}" in world.mail_text()
    assert summary.counts["mails sent"] == 1 and "finance issue #1 opened" in summary.notes

    again = world.run()  # the re-run: no second mail, no second issue, no write
    assert len(world.mails) == 1 and len(world.gitlab.issues) == 1
    assert "finance issue #1 unchanged" in again.notes
    assert "finance mail of 2026-11-21 already sent for this export" in again.notes


def test_issue_closes_when_reconciled_and_reopens_when_drift_returns(world):
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "120"
    world.run(date(2026, 11, 20))

    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "100"
    summary = world.run(date(2026, 11, 21))
    assert world.gitlab.issues[1].state == "closed"
    assert world.gitlab.notes[1] == ["Everything is reconciled as of 2026-11-21. Closing."]
    assert "since the previous as_of: 0 new problem(s), 1 resolved" in summary.notes
    assert "No finance issue is open: nothing needs action." in world.mail_text()

    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "150"
    world.run(date(2026, 11, 22))
    assert world.gitlab.issues[1].state == "opened" and len(world.gitlab.issues) == 1
    assert world.gitlab.notes[1][-1] == "Drift is back as of 2026-11-22: reopened."
    assert len(world.mails) == 3  # one per as_of


def test_an_issue_created_but_not_recorded_is_found_again_not_duplicated(world):
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "120"
    # killed after GitLab created the issue, before the iid was recorded
    world.records.values.crash_on = lambda name, _value: name == "finance_issue_iid"
    with pytest.raises(Killed):
        world.run()
    assert len(world.gitlab.issues) == 1 and world.records.finance_issue_iid() is None

    world.records.values.crash_on = lambda _name, _value: False
    summary = world.run()
    assert len(world.gitlab.issues) == 1 and world.records.finance_issue_iid() == 1
    assert "finance issue #1 unchanged" in summary.notes
    assert len(world.mails) == 1


def test_a_deleted_issue_is_replaced_by_a_new_one(world):
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "120"
    world.run()
    del world.gitlab.issues[1]  # someone deleted it
    summary = world.run(date(2026, 11, 22))
    assert list(world.gitlab.issues) == [1] and world.records.finance_issue_iid() == 1
    assert "finance issue #1 opened" in summary.notes


def test_a_kill_between_smtp_and_the_record_never_mails_twice_and_is_named(world):
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "120"
    # the server accepted the mail (it is in world.mails); the process dies before recording it
    world.records.values.crash_on = lambda name, value: name.startswith("mail:") and value.startswith("sent:")
    with pytest.raises(Killed):
        world.run()
    assert len(world.mails) == 1

    world.records.values.crash_on = lambda _name, _value: False
    summary = world.run()

    assert len(world.mails) == 1  # not sent again
    assert summary.counts["mails interrupted"] == 1 and not summary.failures
    [note] = [note for note in summary.notes if "INTERRUPTED" in note]
    assert note.startswith("finance mail of 2026-11-21 INTERRUPTED") and "finance@example.com" in note
    # a new version of the mail (the catalog changed) goes out as usual
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "130"
    assert world.run().counts["mails sent"] == 1 and len(world.mails) == 2


def test_a_refused_mail_is_sent_by_the_next_run(world):
    def refused(_message: EmailMessage) -> None:
        raise OSError("421 try again later")

    job = SkuReconciliation(
        world.zuora, world.gitlab, world.records, world.exports, ReconciliationConfig(), "run-1", send=refused
    )
    with pytest.raises(OSError, match="421"):
        job.run(AS_OF, None, FETCHED)
    assert world.run().counts["mails sent"] == 1 and len(world.mails) == 1


def test_a_gitlab_error_on_the_issue_fails_the_run_by_name_and_finance_still_gets_the_mail(world):
    world.zuora.records["ProductRatePlanChargeTier"][0]["Price"] = "120"
    world.gitlab.fail_with = GitLabApiError(403, f"GET /projects/{FINANCE}/issues", "403 Forbidden")

    summary = world.run()

    [failure] = summary.failures
    assert (failure.system, failure.record) == ("GitLab", f"finance issue in {FINANCE}")
    assert failure.reason == f"HTTP 403 GET /projects/{FINANCE}/issues: 403 Forbidden"
    assert len(world.mails) == 1 and "No finance issue is open" in world.mail_text()
    assert AS_OF in world.records.runs  # the export and the record happened


def test_a_yaml_syntax_error_mails_finance_once_and_stops(world):
    broken = World("- id: a\n  name: [unclosed\n- id: b\n")
    for _ in range(2):
        with pytest.raises(CatalogSyntaxError, match="line 3, column 5"):
            broken.run()
    [mail] = broken.mails
    assert "could not run" in mail["Subject"] and broken.exports.folders == {} and broken.records.runs == {}
    assert not broken.gitlab.issues


def test_services_yml_is_read_at_the_ref_asked_for(world):
    world.gitlab.files[(CATALOG, "data/services.yml", "catalog-2026-10")] = SERVICES_YML.replace("100", "120")
    job = SkuReconciliation(
        world.zuora, world.gitlab, world.records, world.exports, ReconciliationConfig(), "r", world.mails.append
    )
    job.run(AS_OF, "catalog-2026-10", FETCHED)
    run, problems = world.records.runs[AS_OF]
    assert run.services_yml_ref == "catalog-2026-10" and problems == {ProblemKey("SVC-A", "USD", "price_mismatch")}
    with pytest.raises(GitLabNotFoundError):
        job.run(AS_OF, "no-such-ref", FETCHED)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"zuora_batch_size": 2001}, "zuora_batch_size must be a whole number from 0 to 2000"),
        ({"zuora_batch_size": "100"}, "zuora_batch_size"),
        ({"finance_recipients": ""}, "finance_recipients must be a non-empty text"),
        ({"finance_project": None}, "finance_project"),
        ({"servces_yml_ref": "main"}, "unknown settings"),
    ],
)
def test_bad_settings_are_configuration_errors(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        ReconciliationConfig.from_mapping(settings)
    with pytest.raises(ConfigurationError, match="must be a JSON object"):
        ReconciliationConfig.from_mapping(["not", "an", "object"])  # type: ignore[arg-type]


def test_an_unreadable_local_services_yml_is_a_configuration_error(world, tmp_path):
    with pytest.raises(ConfigurationError, match="services_yml_local_path"):
        world.run(services_yml_local_path=str(tmp_path / "missing.yml"))
