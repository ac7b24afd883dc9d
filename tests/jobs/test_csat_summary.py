"""The CSAT summary job against in-memory fakes: survey results, export folders, the mail ledger's store
and the mail server (the DAG runs on the sandbox are in tests/dags/test_csat_summary.py)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from email.message import EmailMessage

import pytest

from ps_integrations.domain.csat import SurveyOutcome
from ps_integrations.exceptions import ConfigurationError
from ps_integrations.jobs.csat_summary import CsatSummary, SummaryConfig, period_of_run
from ps_integrations.stores.csat import LatestReport
from ps_integrations.stores.sent_mail import SentMailLedger


def outcome(number: int, closed: date, score: int | None, comment: str = "", manager: str = "amara.ps1"):
    return SurveyOutcome(
        f"{number:032x}",
        closed,
        f"Acme: Migration {number}",
        f"https://gitlab.example.com/ps/engagements/-/issues/{number}",
        "Migration",
        "Services",
        manager,
        "Acme",
        score,
        comment,
        f"{closed.isoformat()}T12:00:00+00:00" if score else "",
        f"Acme - Migration {number}",
        "https://gitlab.example.com/ps/engagements/-/issues/99" if score and score <= 2 else "",
    )


class Results:
    def __init__(self, outcomes: list[SurveyOutcome]) -> None:
        self.outcomes_now = outcomes
        self.kept: list[LatestReport] = []

    def outcomes(self) -> list[SurveyOutcome]:
        return list(self.outcomes_now)

    def keep_latest(self, report: LatestReport) -> None:
        self.kept.append(report)


class Folders:
    def __init__(self) -> None:
        self.folders: dict[str, dict[str, bytes]] = {}

    def write_folder(self, folder, title, files):
        self.folders[folder] = {file.name: file.content for file in files}
        return [f"memory://{folder}/{file.name}" for file in files]


class Values:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    def get_value(self, job, name):
        return self.values.get((job, name))

    def set_value(self, job, name, value):
        self.values[(job, name)] = value


class Mailbox:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def __call__(self, message: EmailMessage) -> None:
        self.sent.append(message)


OUTCOMES = [
    outcome(1, date(2026, 8, 3), 5, "Smooth cut-over"),
    outcome(2, date(2026, 8, 20), 4),
    outcome(3, date(2026, 9, 14), 2, "Trainer was late", manager="bjorn.ps2"),
    outcome(4, date(2026, 10, 1), None),
    outcome(5, date(2026, 6, 10), 3, "ok"),  # the quarter before
]


def summary_job(results, folders, values, send, recipients="ps-leadership@example.com"):
    ledger = SentMailLedger(values, "ps_csat_summary")
    return CsatSummary(results, folders, ledger, SummaryConfig(leadership_recipients=recipients), send)


def test_the_quarter_is_exported_kept_for_the_page_and_mailed_once_per_version():
    results, folders, values, mailbox = Results(OUTCOMES), Folders(), Values(), Mailbox()

    summary = summary_job(results, folders, values, mailbox).run("FY2027-Q3")

    files = folders.folders["csat/FY2027-Q3"]
    assert set(files) == {"summary.html", "trend.png", "csat_by_dimension.csv", "responses.csv", "manifest.json"}
    rows = {
        (r["dimension"], r["value"]): r for r in csv.DictReader(io.StringIO(files["csat_by_dimension.csv"].decode()))
    }
    quarter = rows[("fiscal_quarter", "FY2027-Q3")]
    assert (quarter["surveys"], quarter["responses"], quarter["csat_pct"], quarter["response_rate_pct"]) == (
        "4",
        "3",
        "66.7",
        "75.0",
    )
    manifest = json.loads(files["manifest.json"])
    assert manifest["surveys"] == 4 and manifest["responses"] == 3
    assert summary.counts == {"surveys": 4, "responses": 3, "mails sent": 1}
    assert "FY2027-Q3: CSAT 66.7% (n=3) (few responses); last 8 quarters: CSAT 50.0% (n=4) (few responses)" in (
        summary.notes
    )
    [kept] = results.kept
    assert kept.period == "FY2027-Q3" and kept.html == files["summary.html"].decode()
    [mail] = mailbox.sent
    assert mail["To"] == "ps-leadership@example.com" and mail["Subject"].startswith(
        "[ps-integrations] PS CSAT FY2027-Q3"
    )
    assert (
        "2/5 Acme - Migration 3: https://gitlab.example.com/ps/engagements/-/issues/99"
        in mail.get_body(("plain",)).get_content()
    )

    again = summary_job(results, folders, values, mailbox).run("FY2027-Q3")  # nothing changed
    assert len(mailbox.sent) == 1 and "leadership already mailed this version of the summary" in again.notes

    results.outcomes_now = [*OUTCOMES[:3], outcome(4, date(2026, 10, 1), 5)]  # a late answer: a new version
    assert summary_job(results, folders, values, mailbox).run("FY2027-Q3").counts["mails sent"] == 1
    assert len(mailbox.sent) == 2


class Killed(BaseException):
    """What a task timeout or SIGTERM raises in the task (not an Exception)."""


def test_a_mail_killed_after_the_server_accepted_is_named_and_never_sent_twice():
    results, folders, values, mailbox = Results(OUTCOMES), Folders(), Values(), Mailbox()

    def accepted_then_killed(message: EmailMessage) -> None:
        mailbox(message)
        raise Killed

    with pytest.raises(Killed):
        summary_job(results, folders, values, accepted_then_killed).run("FY2027-Q3")

    retry = summary_job(results, folders, values, mailbox).run("FY2027-Q3")
    assert len(mailbox.sent) == 1 and retry.counts["mails sent"] == 0 and not retry.failures
    assert any(note.startswith("leadership mail FY2027-Q3 interrupted") for note in retry.notes)


def test_a_refused_mail_is_sent_by_the_next_run():
    results, folders, values, mailbox = Results(OUTCOMES), Folders(), Values(), Mailbox()

    def refused(message: EmailMessage) -> None:
        raise OSError("451 try later")

    with pytest.raises(OSError, match="451"):
        summary_job(results, folders, values, refused).run("FY2027-Q3")
    assert summary_job(results, folders, values, mailbox).run("FY2027-Q3").counts["mails sent"] == 1


def test_without_recipients_nothing_is_mailed_and_the_run_says_so():
    mailbox = Mailbox()
    summary = summary_job(Results(OUTCOMES), Folders(), Values(), mailbox, recipients="").run("FY2027-Q3")
    assert mailbox.sent == [] and "no leadership_recipients configured: no mail sent" in summary.notes


def test_a_quarter_without_surveys_is_still_reported():
    folders = Folders()
    summary = summary_job(Results([]), folders, Values(), Mailbox()).run("FY2025-Q1")
    assert summary.counts["surveys"] == 0
    assert "No comments this quarter" in folders.folders["csat/FY2025-Q1"]["summary.html"].decode()


@pytest.mark.parametrize(
    ("param", "interval_end", "expected"),
    [
        ("FY2026-Q2", None, "FY2026-Q2"),
        (None, datetime(2026, 11, 2, 7, tzinfo=UTC), "FY2027-Q4"),
        (None, datetime(2026, 11, 1, 0, tzinfo=UTC), "FY2027-Q3"),  # the interval's last moment is in October
        (None, None, "FY2027-Q4"),  # a manual run: the quarter of now
    ],
)
def test_the_period_of_a_run(param, interval_end, expected):
    assert period_of_run(param, interval_end, datetime(2026, 11, 23, 10, tzinfo=UTC), 2) == expected


def test_a_period_that_is_no_fiscal_quarter_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="FY2027-Q3"):
        period_of_run("2027-Q3", None, datetime(2026, 11, 23, tzinfo=UTC), 2)
