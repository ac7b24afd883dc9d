"""The GitLab hook's typed operations (issue #16) against the stand-in: dataclasses out, GitLabApiError only."""

from __future__ import annotations

import json

import pytest

from ps_integrations.exceptions import GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab import GitLabHook, GitLabIssue, GitLabNote, GitLabUser

ENGAGEMENTS = "professional-services/engagements"
TIME_TRACKING = "professional-services/time-tracking"


@pytest.fixture
def gitlab_env(sandbox, monkeypatch):
    definition = sandbox.airflow_connections()["gitlab_default"]
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(definition))
    return sandbox.standin("gitlab")


@pytest.fixture
def hook(gitlab_env):
    return GitLabHook()


def test_list_issues_pages_through_everything_one_request_per_page(hook, gitlab_env):
    everything = [issue.iid for issue in hook.client.projects.get(TIME_TRACKING).issues.list(get_all=True)]
    assert len(everything) > 100  # more than one page of 100
    gitlab_env.clear_call_counts()
    before = hook.requests_made

    listed = list(hook.list_issues(TIME_TRACKING))

    assert sorted(issue.iid for issue in listed) == sorted(everything)
    assert all(isinstance(issue, GitLabIssue) and issue.project == TIME_TRACKING for issue in listed)
    pages = -(-len(everything) // 100)
    assert gitlab_env.call_counts() == {"list_project_issues": pages}
    assert hook.requests_made - before == pages


def test_list_issues_filters_and_typed_fields(hook):
    closed = list(hook.list_issues(ENGAGEMENTS, state="closed"))
    assert closed and all(issue.state == "closed" and issue.closed_at for issue in closed)
    both = list(hook.list_issues(ENGAGEMENTS, labels=("ps::in-progress", "Implementation")))
    assert both and all({"ps::in-progress", "Implementation"} <= set(issue.labels) for issue in both)
    assert all(isinstance(user, GitLabUser) for issue in both for user in issue.assignees)
    assert [issue.iid for issue in hook.list_issues(ENGAGEMENTS, iids=(2, 1))] == [1, 2]
    assert list(hook.list_issues(ENGAGEMENTS, updated_after="2099-01-01T00:00:00Z")) == []


def test_create_get_update_issue_round_trip(hook):
    created = hook.create_issue(
        ENGAGEMENTS, "Acme: Rollout", "Plain text", labels=("ps::todo", "Rollout"), due_date="2026-12-31"
    )
    assert (created.title, created.labels, created.due_date, created.state) == (
        "Acme: Rollout",
        ("ps::todo", "Rollout"),
        "2026-12-31",
        "opened",
    )
    assert created.web_url.endswith(f"/{ENGAGEMENTS}/-/issues/{created.iid}")
    assert created.reference == f"{ENGAGEMENTS}#{created.iid}"

    updated = hook.update_issue(
        ENGAGEMENTS, created.iid, add_labels=("ps::in-progress",), remove_labels=("Rollout",), state_event="close"
    )
    assert (updated.labels, updated.state) == (("ps::in-progress",), "closed")  # scoped: ps::todo replaced
    assert hook.get_issue(ENGAGEMENTS, created.iid) == updated


def test_notes_are_created_and_listed_newest_first(hook):
    hook.create_note(ENGAGEMENTS, 1, "first")
    posted = hook.create_note(ENGAGEMENTS, 1, "second")
    assert isinstance(posted, GitLabNote) and posted.body == "second"
    bodies = [note.body for note in hook.list_notes(ENGAGEMENTS, 1) if not note.system]
    assert bodies[:2] == ["second", "first"]
    assert [note.body for note in hook.list_notes(ENGAGEMENTS, 1, newest_first=False) if not note.system][-2:] == [
        "first",
        "second",
    ]


def test_users_and_group_members(hook):
    members = hook.group_members("professional-services")
    assert members and all(isinstance(member, GitLabUser) and member.username for member in members)
    someone = members[0]
    assert hook.find_user(someone.username) == hook.get_user(someone.id)
    assert hook.find_user("nobody-by-this-name") is None


def test_errors_are_typed_and_name_the_endpoint(hook):
    with pytest.raises(GitLabNotFoundError) as missing:
        hook.get_issue(ENGAGEMENTS, 99999)
    assert (missing.value.status, missing.value.endpoint) == (404, f"GET /projects/{ENGAGEMENTS}/issues/99999")
    with pytest.raises(GitLabApiError) as refused:
        hook.create_issue(ENGAGEMENTS, "", "no title")
    assert refused.value.status == 400 and refused.value.endpoint == f"POST /projects/{ENGAGEMENTS}/issues"
    with pytest.raises(GitLabNotFoundError):
        list(hook.list_issues("no-such/project"))


def test_pacing_spaces_requests(hook):
    calls: list[float] = []
    hook.pace(requests_per_minute=600)  # 0.1 s apart
    pacer = hook._request_pacer
    assert pacer is not None
    original = pacer.wait

    def counted() -> float:
        calls.append(1)
        return original()

    pacer.wait = counted  # type: ignore[method-assign]
    list(hook.list_issues(ENGAGEMENTS))
    hook.get_issue(ENGAGEMENTS, 1)
    assert len(calls) == 2


# --- repository --------------------------------------------------------------------------------------
CATALOG = "professional-services/services-catalog"


def test_get_file_reads_a_file_at_a_ref_with_its_blob_and_commit(hook):
    import hashlib

    from ps_integrations.hooks.gitlab import RepositoryFile

    main = hook.get_file(CATALOG, "data/services.yml", "main")
    older = hook.get_file(CATALOG, "data/services.yml", "catalog-2026-10")

    assert isinstance(main, RepositoryFile) and (main.path, main.ref) == ("data/services.yml", "main")
    assert main.content.startswith("- ") and "migration-plus" in main.content
    raw = main.content.encode()
    assert main.blob_id == hashlib.sha1(b"blob %d\x00" % len(raw) + raw, usedforsecurity=False).hexdigest()
    assert main.content != older.content and main.blob_id != older.blob_id
    assert main.last_commit_id != older.last_commit_id and len(older.last_commit_id) == 40
    with pytest.raises(GitLabNotFoundError) as missing:
        hook.get_file(CATALOG, "data/nothing.yml", "main")
    assert missing.value.endpoint == f"GET /projects/{CATALOG}/repository/files/data/nothing.yml"
    with pytest.raises(GitLabNotFoundError):
        hook.get_file(CATALOG, "data/services.yml", "no-such-branch")
