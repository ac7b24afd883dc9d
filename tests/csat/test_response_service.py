"""The CSAT response service over HTTP (FastAPI's test client) on a real SQLite state database."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine

from ps_integrations import clock
from ps_integrations.csat_service.app import ServiceSettings, create_app
from ps_integrations.csat_service.limiter import LimitSettings
from ps_integrations.domain.csat import make_token
from ps_integrations.state_store import StateStore

SECRET = "test-signing-secret"
SURVEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(tmp_path):
    store = StateStore(engine=create_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    store.apply_schema()
    store.execute(
        "csat/add_survey",
        {
            "survey_id": SURVEY,
            "engagement_url": "https://gitlab.example/ps/engagements/-/issues/3",
            "engagement_title": "Acme <b>Corp</b>: Migration",
            "issue_iid": 3,
            "opportunity_id": "0065g0000000007AAA",
            "account": "Acme",
            "engagement_type": "Migration",
            "sku_category": "Migration",
            "project_manager": "amara.ps1",
            "closed_at": "2026-11-20T10:00:00+00:00",
            "contact_id": "0035g0000000001AAA",
            "contact_name": "Jane",
            "email": "jane@acme.example.com",
            "window_at": "2026-11-20T11:00:00+00:00",
            "run_id": "test",
            "engagement_name": "Acme <b>Corp</b> - Migration Services",
            "company": "GitLab",
            "reply_to": "professional-services@example.com",
        },
    )
    return store


@pytest.fixture
def client(store):
    from fastapi.testclient import TestClient

    app = create_app(store, ServiceSettings(SECRET, secure_cookies=False))
    return TestClient(app, raise_server_exceptions=False)


def responses(store):
    """The survey's answer as the service stored it ([None] before any)."""
    row = store.fetch_one("csat/service_survey", {"survey_id": SURVEY})
    return [row]


def optouts(store):
    return store.fetch_all("csat/optouts")


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


RESPOND = make_token(SECRET, SURVEY, "respond", clock.now() + timedelta(days=60))
UNSUBSCRIBE = make_token(SECRET, SURVEY, "unsubscribe")


def answer(client, url: str, score: str, comment: str = "", page=None):
    """Open the form (unless given) and send it, as the customer's browser does."""
    page = page if page is not None else client.get(url)
    return client.post(url, data={"score": score, "comment": comment, **hidden_fields(page.text)})


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', html))


def test_get_only_shows_the_form_and_records_nothing(client, store):
    for score in range(1, 6):
        page = client.get(f"/r/{RESPOND}?score={score}")
        assert page.status_code == 200 and f'value="{score}" checked' in page.text
    page = client.get(f"/u/{UNSUBSCRIBE}")
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert [row["score"] for row in responses(store)] == [None]
    assert optouts(store) == []
    assert "Acme &lt;b&gt;Corp&lt;/b&gt; - Migration Services" in client.get(f"/r/{RESPOND}").text
    assert page.headers["X-Frame-Options"] == "DENY" and "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_submit_records_the_score_and_a_second_answer_replaces_it(client, store):
    page = client.get(f"/r/{RESPOND}?score=2")
    thanks = answer(client, f"/r/{RESPOND}", "2", "<script>alert(1)</script> slow", page)
    assert thanks.status_code == 200 and "<script>alert(1)" not in thanks.text and "&lt;script&gt;" in thanks.text
    [row] = responses(store)
    assert (row["score"], row["comment"]) == (2, "<script>alert(1)</script> slow")

    page = client.get(f"/r/{RESPOND}")
    assert "You already answered" in page.text
    answer(client, f"/r/{RESPOND}", "4", "better now", page)
    [row] = responses(store)
    assert (row["score"], row["comment"]) == (4, "better now")


@pytest.mark.parametrize("score", ["0", "6", "abc", ""])
def test_scores_outside_one_to_five_are_refused(client, store, score):
    page = client.get(f"/r/{RESPOND}")
    refused = client.post(f"/r/{RESPOND}", data={"score": score, **hidden_fields(page.text)})
    assert refused.status_code == 400 and "Nothing was changed" in refused.text
    assert [row["score"] for row in responses(store)] == [None]


def test_forms_need_the_csrf_token_of_their_cookie(client, store):
    client.get(f"/r/{RESPOND}")
    assert client.post(f"/r/{RESPOND}", data={"score": "5"}).status_code == 403
    assert client.post(f"/r/{RESPOND}", data={"score": "5", "csrf_token": "0" * 64}).status_code == 403
    from fastapi.testclient import TestClient

    stranger = TestClient(client.app)  # a cross-site POST carries no cookie
    page = client.get(f"/r/{RESPOND}")
    assert stranger.post(f"/r/{RESPOND}", data={"score": "5", **hidden_fields(page.text)}).status_code == 403
    assert client.post(f"/u/{UNSUBSCRIBE}", data={"csrf_token": "0" * 64}).status_code == 403
    assert [row["score"] for row in responses(store)] == [None] and optouts(store) == []


@pytest.mark.parametrize(
    "token",
    [
        make_token("someone-elses-secret", SURVEY, "respond"),  # forged
        make_token(SECRET, SURVEY, "unsubscribe"),  # an unsubscribe token used to answer
        make_token(SECRET, "f" * 32, "respond", clock.now() + timedelta(days=1)),  # an unknown survey
        RESPOND[:-3] + "xyz",  # tampered
        "not-a-token",
    ],
)
def test_bad_tokens_get_a_plain_page_and_change_nothing(client, store, token):
    for response in (client.get(f"/r/{token}?score=5"), client.post(f"/r/{token}", data={"score": "5"})):
        assert response.status_code == 404 and "not valid or has expired" in response.text
        assert "Traceback" not in response.text
    assert [row["score"] for row in responses(store)] == [None]


def test_expired_rating_links_are_refused_and_unsubscribe_links_never_expire(client, store, monkeypatch):
    expired = make_token(SECRET, SURVEY, "respond", clock.now() - timedelta(seconds=1))
    assert client.get(f"/r/{expired}").status_code == 404
    monkeypatch.setenv(clock.PIN_VARIABLE, clock.pin_value(clock.now() + timedelta(days=61)))  # two months on
    assert client.get(f"/r/{RESPOND}").status_code == 404
    assert client.post(f"/u/{UNSUBSCRIBE}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert [row["email"] for row in optouts(store)] == ["jane@acme.example.com"]


def test_one_click_unsubscribe_and_the_confirm_page(client, store):
    one_click = client.post(f"/u/{UNSUBSCRIBE}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert [(row["email"]) for row in optouts(store)] == ["jane@acme.example.com"]
    page = client.get(f"/u/{UNSUBSCRIBE}")
    assert client.post(f"/u/{UNSUBSCRIBE}", data={"csrf_token": form_token(page.text)}).status_code == 200
    assert len(optouts(store)) == 1


def test_a_scanner_spending_every_page_view_cannot_keep_the_customer_from_answering(store):
    """A mail scanner on its own address fetches the links until its views are spent; the customer
    opens the mail a moment later and answers."""
    from fastapi.testclient import TestClient

    app = create_app(store, ServiceSettings(SECRET, secure_cookies=False))
    scanner = TestClient(app, client=("203.0.113.7", 40000))
    codes = [scanner.get(f"/r/{RESPOND}?score={n % 5 + 1}").status_code for n in range(130)]
    assert codes[:120] == [200] * 120 and set(codes[120:]) == {429}  # 120 views a minute per address

    customer = TestClient(app, client=("198.51.100.20", 50000))
    assert answer(customer, f"/r/{RESPOND}?score=5", "5").status_code == 200
    [row] = responses(store)
    assert row["score"] == 5


def test_refused_posts_are_limited_per_client_and_a_valid_pair_still_answers(store):
    from fastapi.testclient import TestClient

    app = create_app(store, ServiceSettings(SECRET, secure_cookies=False))
    client = TestClient(app, client=("203.0.113.9", 40000))
    page = client.get(f"/r/{RESPOND}")
    guesses = [client.post(f"/r/{RESPOND}", data={"score": "1", "csrf_token": "0" * 64}).status_code for _ in range(25)]
    assert guesses[:20] == [403] * 20 and set(guesses[20:]) == {429}
    assert answer(client, f"/r/{RESPOND}", "4", page=page).status_code == 200  # the real form still counts
    assert responses(store)[0]["score"] == 4


def test_only_a_flood_of_answers_to_one_survey_is_refused(store):
    from fastapi.testclient import TestClient

    limits = LimitSettings(answers_per_survey="3/hour")
    client = TestClient(create_app(store, ServiceSettings(SECRET, limits=limits, secure_cookies=False)))
    codes = [answer(client, f"/r/{RESPOND}", str(score)).status_code for score in (1, 2, 3, 4)]
    assert codes == [200, 200, 200, 429]
    assert responses(store)[0]["score"] == 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_uri(tmp_path):
    """A throwaway redis-server (Debian's), as the deployment's Redis."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("install Debian's redis-server (make prerequisites does)")
    port = free_port()
    # Outside faketime (`faketime make test`): libfaketime breaks redis-server's start-up (recursive
    # clock_gettime in its allocator). The limits send their own timestamps; Redis's clock is not read.
    environment = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD" and "FAKETIME" not in key}
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        env=environment,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def test_service_processes_share_their_limits_through_redis(store, redis_uri):
    """Two service processes (two apps) on one Redis: one budget, not one each."""
    from fastapi.testclient import TestClient

    limits = LimitSettings(storage_uri=redis_uri, answers_per_survey="2/hour")
    first, second = (
        TestClient(create_app(store, ServiceSettings(SECRET, limits=limits, secure_cookies=False))) for _ in range(2)
    )
    assert answer(first, f"/r/{RESPOND}", "2").status_code == 200
    assert answer(second, f"/r/{RESPOND}", "3").status_code == 200
    assert answer(first, f"/r/{RESPOND}", "4").status_code == 429
    assert answer(second, f"/r/{RESPOND}", "5").status_code == 429
    assert responses(store)[0]["score"] == 3


def test_a_stale_or_replayed_form_shows_the_current_answer_and_changes_nothing(client, store):
    first_form = client.get(f"/r/{RESPOND}?score=3")
    assert answer(client, f"/r/{RESPOND}", "3", "fine", first_form).status_code == 200
    replay = answer(client, f"/r/{RESPOND}", "3", "fine", first_form)  # the same form sent twice
    assert replay.status_code == 409 and 'id="stale"' in replay.text and "Thank you" not in replay.text

    second_form = client.get(f"/r/{RESPOND}?score=5")
    assert answer(client, f"/r/{RESPOND}", "5", "great after all", second_form).status_code == 200
    stale = answer(client, f"/r/{RESPOND}", "3", "fine", first_form)  # the old form tries to set 3 back
    assert stale.status_code == 409
    assert 'value="5" checked' in stale.text and "great after all" in stale.text
    [row] = responses(store)
    assert (row["score"], row["comment"], row["version"]) == (5, "great after all", 2)

    tampered = {**hidden_fields(second_form.text), "version": "2"}  # a version not matching its CSRF token
    assert client.post(f"/r/{RESPOND}", data={"score": "1", **tampered}).status_code == 403
    assert answer(client, f"/r/{RESPOND}", "4", "", stale).status_code == 200  # the form the stale page shows
    assert responses(store)[0]["score"] == 4


def test_the_pages_name_the_company(client):
    page = client.get(f"/r/{RESPOND}?score=4")
    assert "GitLab Professional Services" in page.text
    assert "GitLab Professional Services" in client.get(f"/u/{UNSUBSCRIBE}").text


def test_errors_show_no_stack_trace(store, monkeypatch, client):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database password=hunter2 in a stack trace")

    monkeypatch.setattr(store, "fetch_one", broken)
    response = client.get(f"/r/{RESPOND}")
    assert response.status_code == 500 and "hunter2" not in response.text and "Traceback" not in response.text


def test_customers_still_answer_when_the_shared_limit_storage_is_down(store, caplog):
    from fastapi.testclient import TestClient

    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = TestClient(
        create_app(store, ServiceSettings(SECRET, limits=LimitSettings(unreachable), secure_cookies=False))
    )
    assert answer(client, f"/r/{RESPOND}", "5").status_code == 200
    assert responses(store)[0]["score"] == 5
    assert "rate limits unavailable" in caplog.text


def test_links_signed_before_a_secret_rotation_keep_working(store):
    from fastapi.testclient import TestClient

    rotated = ServiceSettings("the-new-secret", earlier_secrets=(SECRET,), secure_cookies=False)
    client = TestClient(create_app(store, rotated))
    assert answer(client, f"/r/{RESPOND}", "4").status_code == 200  # a mail sent before the rotation
    assert client.post(f"/u/{UNSUBSCRIBE}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert responses(store)[0]["score"] == 4 and len(optouts(store)) == 1
    forged = make_token("someone-elses-secret", SURVEY, "unsubscribe")
    assert client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404


def test_behind_the_proxy_each_forwarded_customer_has_its_own_limit_and_others_cannot_spoof(store, monkeypatch):
    """The service as deployed: uvicorn with proxy headers and FORWARDED_ALLOW_IPS naming the proxy
    (here 127.0.0.1). Customers behind the proxy are counted apart; a peer that is not the proxy
    (127.0.0.2) is counted as itself whatever X-Forwarded-For it sends."""
    import http.client
    import threading

    import uvicorn

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # as docker-compose.yml sets it
    limits = LimitSettings(views_per_client="3/minute")
    app = create_app(store, ServiceSettings(SECRET, limits=limits, secure_cookies=False))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, proxy_headers=True, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:

        def view(forwarded_for: str, source: str = "127.0.0.1") -> int:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
            connection.request("GET", f"/r/{RESPOND}?score=4", headers={"X-Forwarded-For": forwarded_for})
            status = connection.getresponse().status
            connection.close()
            return status

        assert [view("203.0.113.7") for _ in range(4)] == [200, 200, 200, 429]  # a scanner spends its views
        assert view("198.51.100.20") == 200  # the customer behind the same proxy still gets the page
        # not the proxy: its X-Forwarded-For is ignored, so new made-up addresses buy no more views
        assert [view(f"192.0.2.{n}", source="127.0.0.2") for n in range(4)] == [200, 200, 200, 429]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
