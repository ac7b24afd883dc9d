"""The sandbox framework through a real HTTP client: TLS, admin API, every fault-injection mode."""

from __future__ import annotations

import ssl
import time

import pytest
import requests

from sandbox.core.faults import FaultConfig, FaultInjector
from sandbox.core.server import SandboxServer
from tests.sandbox.echo_standin import EchoStandIn

SEED = {"echo": {"items": [{"id": 1}, {"id": 2}]}, "s3": {"buckets": ["framework-test"]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with SandboxServer(SEED, state_dir=tmp_path_factory.mktemp("sbx"), standins=[EchoStandIn()]) as running:
        yield running


@pytest.fixture
def client(server):
    """A requests session that trusts only the sandbox CA (trust_env off: REQUESTS_CA_BUNDLE is set here)."""
    server.reset()
    session = requests.Session()
    session.trust_env = False
    session.verify = server.info()["ca_bundle"]
    return session


def login(client, server) -> str:
    response = client.post(server.url("echo") + "/login", json={"user": "demo", "password": "demo-password"})
    response.raise_for_status()
    return response.json()["token"]


def items(client, server, token):
    return client.get(server.url("echo") + "/items", headers={"Authorization": f"Bearer {token}"})


def admin(server, method, path, **kwargs):
    response = requests.request(method, server.admin_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def test_https_is_trusted_only_with_the_sandbox_ca(client, server):
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(server.url("echo") + "/items")
    assert server.url("echo").startswith("https://")
    assert client.post(server.url("echo") + "/login", json={"user": "x", "password": "y"}).status_code == 401


def test_admin_reports_systems_state_and_call_counts(client, server):
    token = login(client, server)
    items(client, server, token)
    items(client, server, token)

    index = admin(server, "GET", "/")
    assert index["systems"] == {"echo": server.url("echo")}
    assert admin(server, "GET", "/echo/state") == {"items": [{"id": 1}, {"id": 2}]}
    assert admin(server, "GET", "/echo/calls") == {"login": 1, "list_items": 2}
    assert admin(server, "DELETE", "/echo/calls") == {}


def test_admin_seed_replaces_state_and_reset_restores_it(client, server):
    admin(server, "POST", "/seed", json={"echo": {"items": [{"id": 9}]}})
    assert items(client, server, login(client, server)).json() == [{"id": 9}]

    server.seed = SEED  # what the module started with
    admin(server, "POST", "/reset")
    assert items(client, server, login(client, server)).json() == [{"id": 1}, {"id": 2}]


def test_unknown_system_and_bad_fault_settings_are_refused(server):
    assert requests.get(server.admin_url + "/nope/state", timeout=5).status_code == 404
    response = requests.put(server.admin_url + "/echo/faults", json={"latency": 5}, timeout=5)
    assert response.status_code == 400
    assert "unknown fault settings" in response.json()["error"]


def test_latency_is_added_to_every_call(client, server):
    token = login(client, server)
    admin(server, "PUT", "/echo/faults", json={"latency_ms": 250})
    started = time.monotonic()
    assert items(client, server, token).status_code == 200
    assert time.monotonic() - started >= 0.25


def test_rate_limit_answers_429_with_the_real_retry_after(client, server):
    token = login(client, server)
    admin(server, "PUT", "/echo/faults", json={"rate_limit_per_minute": 3})
    statuses = [items(client, server, token) for _ in range(4)]

    assert [response.status_code for response in statuses] == [200, 200, 200, 429]
    retry_after = int(statuses[3].headers["Retry-After"])
    assert 55 <= retry_after <= 60  # seconds until the oldest call leaves the one-minute window
    assert statuses[2].headers["RateLimit-Remaining"] == "0"


def test_retry_after_can_be_scaled_down_for_tests(client, server):
    token = login(client, server)
    admin(
        server,
        "PUT",
        "/echo/faults",
        json={"rate_limit_per_minute": 1, "rate_limit_window_seconds": 0.5, "retry_after_scale": 0.01},
    )
    assert items(client, server, token).status_code == 200
    limited = items(client, server, token)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    time.sleep(0.6)
    assert items(client, server, token).status_code == 200


def test_error_rate_gives_5xx_for_that_share_of_calls(client, server):
    token = login(client, server)
    admin(server, "PUT", "/echo/faults", json={"error_rate": 0.5, "error_status": 502, "random_seed": 1})
    statuses = [items(client, server, token).status_code for _ in range(40)]

    assert set(statuses) == {200, 502}
    assert 10 <= statuses.count(502) <= 30
    admin(server, "PUT", "/echo/faults", json={"error_rate": 1.0})
    assert items(client, server, token).status_code == 503


def test_scripted_failures_hit_the_next_n_calls_of_one_endpoint(client, server):
    token = login(client, server)
    admin(
        server,
        "POST",
        "/echo/faults/script",
        json={"endpoint": "list_items", "kind": "server_error", "count": 2, "status": 504},
    )

    assert [items(client, server, token).status_code for _ in range(3)] == [504, 504, 200]
    assert login(client, server)  # other endpoints are untouched
    assert admin(server, "GET", "/echo/calls") == {"login": 2, "list_items": 3}


def test_scripted_session_expiry_and_rate_limit_render_in_the_systems_shape(client, server):
    token = login(client, server)
    admin(server, "POST", "/echo/faults/script", json={"endpoint": "list_items", "kind": "session_expired"})
    admin(server, "POST", "/echo/faults/script", json={"endpoint": "list_items", "kind": "rate_limited"})

    expired = items(client, server, token)
    limited = items(client, server, token)
    assert (expired.status_code, expired.json()) == (401, {"message": "Session expired"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"


def test_session_expiry_on_demand_and_after_a_ttl(client, server):
    token = login(client, server)
    assert admin(server, "POST", "/echo/sessions/expire") == {"expired": 1}
    assert items(client, server, token).status_code == 401
    assert items(client, server, login(client, server)).status_code == 200

    admin(server, "PUT", "/echo/faults", json={"session_ttl_seconds": 0.2})
    token = login(client, server)
    assert items(client, server, token).status_code == 200
    time.sleep(0.3)
    assert items(client, server, token).status_code == 401


def test_smtp_sink_keeps_messages_for_the_admin_api(server):
    import smtplib
    from email.message import EmailMessage

    server.reset()
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "Hello sink"
    message.set_content("plain body")
    message.add_alternative("<p>html body</p>", subtype="html")
    with smtplib.SMTP(server.smtp.host, server.smtp.port) as smtp:
        smtp.send_message(message)

    received = admin(server, "GET", "/smtp/messages")
    assert [(m["subject"], m["rcpt_tos"], m["text"].strip(), m["html"].strip()) for m in received] == [
        ("Hello sink", ["b@example.com"], "plain body", "<p>html body</p>")
    ]
    assert admin(server, "DELETE", "/smtp/messages") == {"deleted": 1}


def test_fault_injector_refuses_unknown_kinds():
    injector = FaultInjector(FaultConfig())
    with pytest.raises(ValueError, match="unknown fault kind"):
        injector.script("x", "explode")
    assert injector.before_call("x") is None


def test_server_context_is_tls():
    import tempfile
    from pathlib import Path

    from sandbox.core.tls import LocalCA

    with tempfile.TemporaryDirectory() as directory:
        ca = LocalCA(Path(directory))
        assert isinstance(ca.server_context(), ssl.SSLContext)
        assert ca.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_slow_response_takes_effect_before_answering(client, server):
    token = login(client, server)
    admin(
        server, "POST", "/echo/faults/script", json={"endpoint": "list_items", "kind": "slow_response", "delay_ms": 300}
    )
    started = time.monotonic()
    response = items(client, server, token)
    assert response.status_code == 200 and response.json() == [{"id": 1}, {"id": 2}]
    assert time.monotonic() - started >= 0.3


def test_a_held_answer_is_counted_while_held_and_let_go_by_a_reset(client, server):
    """What the chaos harness kills on: the call took effect, its answer is held (``holding``)."""
    import threading

    token = login(client, server)
    admin(
        server,
        "POST",
        "/echo/faults/script",
        json={"endpoint": "list_items", "kind": "slow_response", "delay_ms": 60000, "after": 1},
    )
    assert items(client, server, token).status_code == 200  # the first call goes through at once
    answers: list[int] = []
    caller = threading.Thread(target=lambda: answers.append(items(client, server, token).status_code))
    started = time.monotonic()
    caller.start()
    while admin(server, "GET", "/echo/faults")["holding"] != 1:
        assert time.monotonic() - started < 10
        time.sleep(0.02)
    assert not answers
    server.standin("echo").faults.reset()
    caller.join(timeout=10)
    assert answers == [200] and time.monotonic() - started < 10
    assert admin(server, "GET", "/echo/faults")["holding"] == 0


def test_smtp_holds_the_reply_of_the_nth_message_after_keeping_it(server):
    import smtplib
    import threading
    from email.message import EmailMessage

    server.reset()

    def send(subject: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", subject
        message.set_content("body")
        with smtplib.SMTP(server.smtp.host, server.smtp.port, timeout=30) as smtp:
            smtp.send_message(message)

    assert admin(server, "PUT", "/smtp/hold", json={"after": 1, "seconds": 60}) == {"holding": 0}
    send("first")  # let through
    sender = threading.Thread(target=send, args=("second",))
    started = time.monotonic()
    sender.start()
    while server.smtp.holding != 1:
        assert time.monotonic() - started < 10
        time.sleep(0.02)
    assert [m["subject"] for m in admin(server, "GET", "/smtp/messages")] == ["first", "second"]  # kept
    assert sender.is_alive()  # ... but not yet answered
    admin(server, "DELETE", "/smtp/hold")
    sender.join(timeout=10)
    assert not sender.is_alive() and server.smtp.holding == 0
