"""The CSAT response service over HTTP (FastAPI's test client) on a real SQLite state database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import create_engine

from ps_integrations.csat_service.app import ServiceSettings, create_app
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
        },
    )
    return store


@pytest.fixture
def client(store):
    from fastapi.testclient import TestClient

    app = create_app(store, ServiceSettings(SECRET, per_token_per_minute=1000, secure_cookies=False))
    return TestClient(app, raise_server_exceptions=False)


def responses(store):
    """The survey's answer as the service stored it ([None] before any)."""
    row = store.fetch_one("csat/service_survey", {"survey_id": SURVEY})
    return [row]


def optouts(store):
    return store.fetch_all("csat/optouts")


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', html).group(1)


RESPOND = make_token(SECRET, SURVEY, "respond")
UNSUBSCRIBE = make_token(SECRET, SURVEY, "unsubscribe")


def test_get_only_shows_the_form_and_records_nothing(client, store):
    for score in range(1, 6):
        page = client.get(f"/r/{RESPOND}?score={score}")
        assert page.status_code == 200 and f'value="{score}" checked' in page.text
    page = client.get(f"/u/{UNSUBSCRIBE}")
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert [row["score"] for row in responses(store)] == [None]
    assert optouts(store) == []
    assert "Acme &lt;b&gt;Corp&lt;/b&gt;" in client.get(f"/r/{RESPOND}").text
    assert page.headers["X-Frame-Options"] == "DENY" and "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_submit_records_the_score_and_a_second_answer_replaces_it(client, store):
    page = client.get(f"/r/{RESPOND}?score=2")
    thanks = client.post(
        f"/r/{RESPOND}",
        data={"score": "2", "comment": "<script>alert(1)</script> slow", "csrf_token": form_token(page.text)},
    )
    assert thanks.status_code == 200 and "<script>alert(1)" not in thanks.text and "&lt;script&gt;" in thanks.text
    [row] = responses(store)
    assert (row["score"], row["comment"]) == (2, "<script>alert(1)</script> slow")

    page = client.get(f"/r/{RESPOND}")
    assert "You already answered" in page.text
    client.post(f"/r/{RESPOND}", data={"score": "4", "comment": "better now", "csrf_token": form_token(page.text)})
    [row] = responses(store)
    assert (row["score"], row["comment"]) == (4, "better now")


@pytest.mark.parametrize("score", ["0", "6", "abc", ""])
def test_scores_outside_one_to_five_are_refused(client, store, score):
    page = client.get(f"/r/{RESPOND}")
    refused = client.post(f"/r/{RESPOND}", data={"score": score, "csrf_token": form_token(page.text)})
    assert refused.status_code == 400 and "Nothing was changed" in refused.text
    assert [row["score"] for row in responses(store)] == [None]


def test_forms_need_the_csrf_token_of_their_cookie(client, store):
    client.get(f"/r/{RESPOND}")
    assert client.post(f"/r/{RESPOND}", data={"score": "5"}).status_code == 403
    assert client.post(f"/r/{RESPOND}", data={"score": "5", "csrf_token": "0" * 64}).status_code == 403
    from fastapi.testclient import TestClient

    stranger = TestClient(client.app)  # a cross-site POST carries no cookie
    page = client.get(f"/r/{RESPOND}")
    assert stranger.post(f"/r/{RESPOND}", data={"score": "5", "csrf_token": form_token(page.text)}).status_code == 403
    assert client.post(f"/u/{UNSUBSCRIBE}", data={"csrf_token": "0" * 64}).status_code == 403
    assert [row["score"] for row in responses(store)] == [None] and optouts(store) == []


@pytest.mark.parametrize(
    "token",
    [
        make_token("someone-elses-secret", SURVEY, "respond"),  # forged
        make_token(SECRET, SURVEY, "unsubscribe"),  # an unsubscribe token used to answer
        make_token(SECRET, "f" * 32, "respond"),  # a valid signature for an unknown survey
        RESPOND[:-3] + "xyz",  # tampered
        "not-a-token",
    ],
)
def test_bad_tokens_get_a_plain_page_and_change_nothing(client, store, token):
    for response in (client.get(f"/r/{token}?score=5"), client.post(f"/r/{token}", data={"score": "5"})):
        assert response.status_code == 404 and "not valid or has expired" in response.text
        assert "Traceback" not in response.text
    assert [row["score"] for row in responses(store)] == [None]


def test_expired_tokens_are_refused(store):
    from fastapi.testclient import TestClient

    app = create_app(store, ServiceSettings(SECRET, token_max_age=timedelta(seconds=-1), secure_cookies=False))
    assert TestClient(app).get(f"/r/{RESPOND}").status_code == 404


def test_one_click_unsubscribe_and_the_confirm_page(client, store):
    one_click = client.post(f"/u/{UNSUBSCRIBE}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert [(row["email"]) for row in optouts(store)] == ["jane@acme.example.com"]
    page = client.get(f"/u/{UNSUBSCRIBE}")
    assert client.post(f"/u/{UNSUBSCRIBE}", data={"csrf_token": form_token(page.text)}).status_code == 200
    assert len(optouts(store)) == 1


def test_rate_limited_per_token(store):
    from fastapi.testclient import TestClient

    app = create_app(store, ServiceSettings(SECRET, per_token_per_minute=3, secure_cookies=False))
    client = TestClient(app)
    codes = [client.get(f"/r/{RESPOND}").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_errors_show_no_stack_trace(store, monkeypatch, client):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database password=hunter2 in a stack trace")

    monkeypatch.setattr(store, "fetch_one", broken)
    response = client.get(f"/r/{RESPOND}")
    assert response.status_code == 500 and "hunter2" not in response.text and "Traceback" not in response.text
