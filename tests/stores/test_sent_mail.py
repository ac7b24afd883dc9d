"""SentMailLedger: one mail per version, none resent after a kill during the send (#18, #21, #23)."""

from __future__ import annotations

import pytest

from ps_integrations.stores.sent_mail import MailState, SentMailLedger


class Values:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    def get_value(self, job: str, name: str) -> str | None:
        return self.values.get((job, name))

    def set_value(self, job: str, name: str, value: str) -> None:
        self.values[(job, name)] = value

    def fetch_all(self, name: str, params: dict) -> list[dict]:
        prefix = params["pattern"].rstrip("%")
        return [
            {"name": key, "value": value}
            for (job, key), value in sorted(self.values.items())
            if job == params["job"] and key.startswith(prefix)
        ]


def test_a_version_is_sent_once_and_a_new_version_again():
    ledger, sent = SentMailLedger(Values(), "job"), []
    assert ledger.send_once("finance", "v1", lambda: sent.append("v1")) is MailState.SENT
    assert ledger.send_once("finance", "v1", lambda: sent.append("v1")) is MailState.ALREADY_SENT
    assert ledger.send_once("finance", "v2", lambda: sent.append("v2")) is MailState.SENT
    assert sent == ["v1", "v2"]


def test_a_failed_send_is_released_and_sent_by_the_next_run():
    ledger, sent = SentMailLedger(Values(), "job"), []

    def refused() -> None:
        raise OSError("421 try again later")

    with pytest.raises(OSError):
        ledger.send_once("finance", "v1", refused)
    assert ledger.state("finance", "v1") is None
    assert ledger.send_once("finance", "v1", lambda: sent.append("v1")) is MailState.SENT
    assert sent == ["v1"]


def test_a_kill_after_the_server_accepted_never_mails_twice():
    values = Values()
    # What a SIGKILL after the server's 250 leaves: the claim, and the mail delivered.
    values.set_value("job", "finance", "sending:v1")
    accepted = ["v1"]
    ledger = SentMailLedger(values, "job")
    assert ledger.send_once("finance", "v1", lambda: accepted.append("again")) is MailState.INTERRUPTED
    assert accepted == ["v1"]
    assert ledger.interrupted() == ["finance"]  # named by every run until a new version goes out
    assert ledger.send_once("finance", "v2", lambda: accepted.append("v2")) is MailState.SENT
    assert ledger.interrupted() == []


def test_versions_recorded_before_the_claim_existed_count_as_sent():
    values = Values()
    values.set_value("job", "finance", "v1")
    assert SentMailLedger(values, "job").send_once("finance", "v1", lambda: None) is MailState.ALREADY_SENT
