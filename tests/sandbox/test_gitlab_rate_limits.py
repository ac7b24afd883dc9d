"""GitLab's per-endpoint limits (ApplicationRateLimiter) on the stand-in, over HTTP as clients see them."""

from __future__ import annotations

import requests

PROJECT = "professional-services%2Fengagements"
TOKEN = "sandbox-gitlab-token"  # the sandbox's fake token


def _seed(sandbox, **settings):
    seed = dict(sandbox.seed)
    seed["gitlab"] = {**seed["gitlab"], "application_settings": settings}
    sandbox.load_seed(seed)


def _call(sandbox, method, path, **kwargs):
    return requests.request(
        method,
        sandbox.url("gitlab") + "/api/v4" + path,
        headers={"PRIVATE-TOKEN": TOKEN},
        verify=sandbox.info()["ca_bundle"],
        timeout=10,
        **kwargs,
    )


def test_search_listings_have_their_own_limit_with_gitlabs_answer(sandbox):
    _seed(sandbox, search_rate_limit=2)
    assert _call(sandbox, "GET", "/application/settings").json()["search_rate_limit"] == 2
    for _ in range(2):
        assert _call(sandbox, "GET", f"/projects/{PROJECT}/issues", params={"search": "x"}).status_code == 200
    refused = _call(sandbox, "GET", f"/projects/{PROJECT}/issues", params={"search": "x"})

    assert refused.status_code == 429
    assert refused.json() == {"message": {"error": "This endpoint has been requested too many times. Try again later."}}
    assert refused.headers["Retry-After"] == "60"  # the limit's interval (API::Helpers::RateLimiter)
    # Listings without search and other endpoints only count toward the global limit.
    for _ in range(5):
        assert _call(sandbox, "GET", f"/projects/{PROJECT}/issues", params={"per_page": 1}).status_code == 200
    assert sandbox.standin("gitlab").state()["application_rate_limited"] == {"search_rate_limit": 1}


def test_note_creation_has_its_own_limit_and_settings_change_it(sandbox):
    _seed(sandbox, notes_create_limit=1, search_rate_limit=0)
    issue = _call(sandbox, "GET", f"/projects/{PROJECT}/issues", params={"per_page": 1}).json()[0]
    path = f"/projects/{PROJECT}/issues/{issue['iid']}/notes"
    assert _call(sandbox, "POST", path, data={"body": "first"}).status_code == 201
    refused = _call(sandbox, "POST", path, data={"body": "second"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert not any(note["body"] == "second" for note in _call(sandbox, "GET", path).json())
    for _ in range(40):  # search_rate_limit 0: off, as in GitLab
        assert _call(sandbox, "GET", f"/projects/{PROJECT}/issues", params={"search": "x"}).status_code == 200

    changed = _call(sandbox, "PUT", "/application/settings", data={"notes_create_limit": 300})
    assert changed.json()["notes_create_limit"] == 300
    assert _call(sandbox, "POST", path, data={"body": "third"}).status_code == 201


def test_defaults_are_gitlabs():
    from sandbox.gitlab.standin import GitLabStandIn

    standin = GitLabStandIn()
    standin.load_seed({})
    assert standin.application_limits.settings == {"search_rate_limit": 30, "notes_create_limit": 300}


def test_titles_mention_and_reference_on_the_stand_in():
    from sandbox.gitlab.standin import GitLabStandIn
    from sandbox.seeds import load_seed_file

    standin = GitLabStandIn()
    standin.load_seed(load_seed_file()["gitlab"])
    backend = standin.backend
    project = backend.project("professional-services/engagements")
    author = backend.users[min(backend.users)]
    issue = backend.create_issue(project, author, {"title": "Fix #1 for @all"})
    quiet = backend.create_issue(project, author, {"title": "Fix #\u200b1 for @\u200ball, mail ops@example.com"})

    state = standin.state()
    assert [(n["username"], n["source"]) for n in state["notifications"] if n["issue_id"] == issue.id] == [
        ("all", "title")
    ]
    assert [(r["kind"], r["source"]) for r in state["cross_references"] if r["issue_id"] == issue.id] == [
        ("issue", "title")
    ]
    assert not [n for n in state["notifications"] if n["issue_id"] == quiet.id]
    assert not [r for r in state["cross_references"] if r["issue_id"] == quiet.id]
