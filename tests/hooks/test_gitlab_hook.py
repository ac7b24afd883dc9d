"""Contract tests: the GitLab hook, python-gitlab (REST) and its GraphQL client against the stand-in."""

from __future__ import annotations

import hashlib
import json
import time

import gitlab
import pytest
import requests

from ps_integrations.exceptions import GitLabApiError
from ps_integrations.hooks.gitlab import GitLabHook

ENGAGEMENTS = "professional-services/engagements"
TIMELOGS_QUERY = """
query($project: ProjectID!, $after: String) {
  timelogs(projectId: $project, first: 2, after: $after, sort: SPENT_AT_ASC) {
    count
    totalSpentTime
    pageInfo { hasNextPage endCursor }
    nodes { id spentAt timeSpent summary note { body } user { username name }
            issue { iid title webUrl state labels { nodes { title } } } project { fullPath } }
  }
}"""


@pytest.fixture
def gitlab_env(sandbox, monkeypatch):
    definition = sandbox.airflow_connections()["gitlab_default"]
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(definition))
    return sandbox.standin("gitlab")


@pytest.fixture
def hook(gitlab_env):
    return GitLabHook()


def admin(sandbox, method, path, **kwargs):
    response = requests.request(method, sandbox.admin_url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def raw(sandbox, path, token="sandbox-gitlab-token", **kwargs):  # noqa: S107 - the sandbox's fake token
    return requests.get(
        sandbox.url("gitlab") + path,
        headers={"PRIVATE-TOKEN": token},
        verify=sandbox.info()["ca_bundle"],
        timeout=10,
        **kwargs,
    )


def test_unauthorised_token_is_refused_everywhere(gitlab_env, sandbox, monkeypatch):
    response = raw(sandbox, "/api/v4/projects", token="wrong")
    assert (response.status_code, response.json()) == (401, {"message": "401 Unauthorized"})

    definition = sandbox.airflow_connections()["gitlab_default"]
    definition["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(definition))
    hook = GitLabHook()
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        hook.client.projects.get(ENGAGEMENTS)
    with pytest.raises(GitLabApiError) as raised:
        hook.graphql_query("{ currentUser { username } }")
    assert raised.value.status == 401
    ok, message = hook.test_connection()
    assert not ok and "401" in message


def test_test_connection_names_the_token_user(hook):
    assert hook.test_connection() == (True, "Connection successfully tested as ps-integration-bot")


def test_rest_pagination_headers_are_gitlabs(gitlab_env, sandbox):
    response = raw(
        sandbox, "/api/v4/projects/professional-services%2Ftime-tracking/issues", params={"per_page": 50, "page": 2}
    )
    total = int(response.headers["X-Total"])

    assert response.status_code == 200
    assert total > 100
    assert response.headers["X-Page"] == "2"
    assert response.headers["X-Per-Page"] == "50"
    assert response.headers["X-Next-Page"] == "3"
    assert response.headers["X-Prev-Page"] == "1"
    assert response.headers["X-Total-Pages"] == str(-(-total // 50))
    assert set(response.links) == {"next", "prev", "first", "last"}
    assert "page=3" in response.links["next"]["url"] and "per_page=50" in response.links["next"]["url"]
    assert len(response.json()) == 50


def test_python_gitlab_pages_through_link_headers(hook, gitlab_env):
    project = hook.client.projects.get("professional-services/time-tracking")
    gitlab_env.clear_call_counts()
    issues = list(project.issues.list(iterator=True, per_page=40))

    assert len(issues) == len({issue.iid for issue in issues}) > 120
    assert gitlab_env.call_counts() == {"list_project_issues": -(-len(issues) // 40)}


def test_label_filters_search_and_state(hook, gitlab_env):
    project = hook.client.projects.get(ENGAGEMENTS)
    both = project.issues.list(labels="ps::in-progress,Implementation", get_all=True)
    assert both and all({"ps::in-progress", "Implementation"} <= set(issue.labels) for issue in both)

    found = project.issues.list(search="globex", get_all=True)
    assert [issue.title for issue in found] == ["Globex: Implementation"]
    closed = project.issues.list(state="closed", get_all=True)
    assert closed and all(issue.state == "closed" for issue in closed)
    picked = project.issues.list(iids=[1, 2], order_by="created_at", sort="asc", get_all=True)
    assert sorted(issue.iid for issue in picked) == [1, 2]
    pm = both[0].assignees[0]["username"]
    assert all(
        pm in [a["username"] for a in issue.assignees]
        for issue in project.issues.list(assignee_username=pm, get_all=True)
    )
    group_issues = hook.client.groups.get("professional-services").issues.list(
        labels="ManagerCertifiedTimesheet", per_page=100, get_all=True
    )
    assert group_issues and all("ManagerCertifiedTimesheet" in issue.labels for issue in group_issues)
    later = project.issues.list(updated_after="2099-01-01T00:00:00Z", get_all=True)
    assert later == []


def test_create_update_and_scoped_labels_are_exclusive(hook):
    project = hook.client.projects.get(ENGAGEMENTS)
    issue = project.issues.create(
        {
            "title": "Acme: Rollout",
            "description": "Plain text",
            "labels": "ps::todo,Rollout",
            "due_date": "2026-12-31",
            "confidential": True,
        }
    )
    assert (issue.iid, issue.labels, issue.due_date, issue.confidential) == (
        13,
        ["ps::todo", "Rollout"],
        "2026-12-31",
        True,
    )
    assert issue.web_url.endswith(f"/{ENGAGEMENTS}/-/issues/13")

    issue.labels = ["ps::todo", "Rollout", "ps::in-progress"]
    issue.save()
    assert project.issues.get(13).labels == ["Rollout", "ps::in-progress"]
    project.issues.update(13, {"add_labels": "ps::done", "state_event": "close"})
    fetched = project.issues.get(13)
    assert (fetched.labels, fetched.state) == (["Rollout", "ps::done"], "closed")
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as raised:
        project.issues.create({"title": ""})
    assert raised.value.response_code == 400


def test_quick_actions_and_mentions_act_as_in_gitlab(hook, gitlab_env):
    project = hook.client.projects.get(ENGAGEMENTS)
    engineer = hook.client.users.list(username="amara.ps1")[0]
    issue = project.issues.create(
        {
            "title": "Quick actions",
            "description": "Hello @all\n/label ~urgent\n/assign @amara.ps1\n```\n/close\n```\n> /close",
        }
    )
    assert issue.state == "opened"
    assert issue.labels == ["urgent"]
    assert [a["id"] for a in issue.assignees] == [engineer.id]
    assert issue.description == "Hello @all\n```\n/close\n```\n> /close"

    note = issue.notes.create({"body": "Done, thanks @head-of-ps see #2 ~x\n/spend 1h30m 2026-11-01\n/close"})
    assert note.body == "Done, thanks @head-of-ps see #2 ~x"
    fetched = project.issues.get(issue.iid)
    assert fetched.state == "closed"
    assert fetched.time_stats()["total_time_spent"] == 5400

    state = gitlab_env.state()
    mentioned = [(n["username"], n["source"]) for n in state["notifications"] if n["issue_iid"] == issue.iid]
    assert mentioned == [("all", "description"), ("head-of-ps", "note")]
    refs = [(r["kind"], r["reference"]) for r in state["cross_references"] if r["issue_iid"] == issue.iid]
    assert refs == [("issue", "2"), ("label", "x")]


def test_time_written_through_rest_and_spend_is_read_through_graphql(hook, sandbox):
    project = hook.client.projects.get("professional-services/finance")
    issue = project.issues.create({"title": "Time tracking"})
    issue.add_spent_time("45m", summary="Kick-off call")
    issue.notes.create({"body": "Workshop\n/spend 2h 2026-10-30"})
    issue.notes.create({"body": "Correction\n/spend -15m 2026-10-30"})

    requests_before = hook.requests_made
    nodes = list(hook.graphql_nodes(TIMELOGS_QUERY, {"project": f"gid://gitlab/Project/{project.id}"}, ["timelogs"]))
    pages = hook.requests_made - requests_before

    assert [(n["timeSpent"], n["summary"], (n["note"] or {}).get("body")) for n in nodes] == [
        (7200, None, "Workshop"),
        (-900, None, "Correction"),
        (2700, "Kick-off call", None),
    ]
    assert nodes[0]["spentAt"] == "2026-10-30T00:00:00.000Z"
    assert {n["user"]["username"] for n in nodes} == {"ps-integration-bot"}
    assert (
        nodes[0]["issue"]["iid"] == str(issue.iid)
        and nodes[0]["project"]["fullPath"] == "professional-services/finance"
    )
    assert pages == 2
    totals = hook.graphql_query(TIMELOGS_QUERY, {"project": f"gid://gitlab/Project/{project.id}", "after": None})
    assert (totals["timelogs"]["count"], totals["timelogs"]["totalSpentTime"]) == (3, "9000")
    assert project.issues.get(issue.iid).time_stats()["human_total_time_spent"] == "2h 30m"


def test_group_timelogs_page_through_graphql(hook, gitlab_env):
    query = """query($group: GroupID!, $after: String) {
      timelogs(groupId: $group, startDate: "2026-10-26", endDate: "2026-10-30", first: 100, after: $after) {
        count pageInfo { hasNextPage endCursor } nodes { timeSpent spentAt user { username } issue { epic { title } } }
      }
    }"""
    first = hook.graphql_query(query, {"group": "gid://gitlab/Group/1", "after": None})["timelogs"]
    gitlab_env.clear_call_counts()
    nodes = list(hook.graphql_nodes(query, {"group": "gid://gitlab/Group/1"}, ["timelogs"]))

    assert len(nodes) == first["count"] > 100
    assert all("2026-10-26" <= node["spentAt"][:10] <= "2026-10-30" for node in nodes)
    assert gitlab_env.call_counts() == {"graphql": -(-len(nodes) // 100)}
    assert {node["issue"]["epic"]["title"] for node in nodes if node["issue"]["epic"]} >= {
        "Project Work",
        "PS Internal",
    }


def test_graphql_errors_are_gitlabs(hook):
    with pytest.raises(GitLabApiError, match="Cannot query field 'hours' on type 'Timelog'"):
        hook.graphql_query('{ timelogs(groupId: "gid://gitlab/Group/1") { nodes { hours } } }')
    with pytest.raises(GitLabApiError, match="Provide at least one argument"):
        hook.graphql_query("{ timelogs { count } }")
    with pytest.raises(GitLabApiError, match="either a start date or time"):
        hook.graphql_query(
            '{ timelogs(groupId: "gid://gitlab/Group/1", startDate: "2026-01-01", '
            'startTime: "2026-01-01T00:00:00Z") { count } }'
        )
    with pytest.raises(GitLabApiError, match="Unknown argument 'since'"):
        hook.graphql_query('{ timelogs(groupId: "gid://gitlab/Group/1", since: "x") { count } }')


def test_repository_file_at_two_refs(hook, gitlab_env, sandbox):
    project = hook.client.projects.get("professional-services/services-catalog")
    old = project.files.get(file_path="data/services.yml", ref="catalog-2026-10")
    new = project.files.get(file_path="data/services.yml", ref="main")
    raw_old = project.files.raw(file_path="data/services.yml", ref="catalog-2026-10")

    with open("include/reference/services.yml", "rb") as handle:
        original = handle.read()
    assert raw_old == original == old.decode()
    assert old.blob_id == hashlib.sha1(b"blob %d\x00" % len(original) + original, usedforsecurity=False).hexdigest()
    assert new.blob_id != old.blob_id
    assert b"price: 37500" in new.decode() and b"price: 37500" not in original
    assert [commit.title for commit in project.commits.list(ref_name="main", get_all=True)] == [
        "Raise the Migration+ price",
        "Add the PS services catalog",
    ]
    created = project.commits.create(
        {
            "branch": "main",
            "commit_message": "Add a note",
            "actions": [{"action": "create", "file_path": "NOTES.md", "content": "hi"}],
        }
    )
    assert project.files.raw(file_path="NOTES.md", ref=created.id) == b"hi"
    with pytest.raises(gitlab.exceptions.GitlabGetError) as raised:
        project.files.get(file_path="data/services.yml", ref="no-such-ref")
    assert raised.value.response_code == 404


def test_issue_links_and_epics(hook):
    project = hook.client.projects.get(ENGAGEMENTS)
    source = project.issues.get(1)
    source.links.create({"target_project_id": project.id, "target_issue_iid": 2})
    assert [linked.iid for linked in source.links.list()] == [2]
    epics = hook.client.groups.get("professional-services").epics.list(get_all=True)
    assert [epic.title for epic in epics] == [
        "Project Work",
        "PS Internal",
        "Internal Assisted",
        "Global Company Meetings",
        "PTO/Holidays",
    ]
    titles = [issue.title for issue in epics[0].issues.list(get_all=True)]
    assert len(titles) == 13 and "Project Work - time tracking" in titles  # 12 engagements + the category issue


def test_429_retry_after_is_obeyed_by_rest_and_graphql(hook, gitlab_env, sandbox):
    admin(
        sandbox,
        "PUT",
        "/gitlab/faults",
        json={"rate_limit_per_minute": 2, "rate_limit_window_seconds": 1, "retry_after_scale": 1},
    )
    project_path = "professional-services/finance"
    started = time.monotonic()
    for _ in range(3):
        hook.client.projects.get(project_path)
    elapsed = time.monotonic() - started

    assert gitlab_env.call_counts()["get_project"] == 4  # the third call was refused once, then retried
    assert elapsed >= 1.0  # waited the Retry-After second

    gitlab_env.clear_call_counts()
    admin(sandbox, "POST", "/gitlab/faults/script", json={"endpoint": "graphql", "kind": "rate_limited", "count": 1})
    admin(sandbox, "PUT", "/gitlab/faults", json={"retry_after_scale": 1 / 60})  # GitLab's 60 s -> 1 s
    assert hook.graphql_query("{ currentUser { username } }")["currentUser"]["username"] == "ps-integration-bot"
    assert gitlab_env.call_counts() == {"graphql": 2}


def test_429_response_shape(gitlab_env, sandbox):
    admin(sandbox, "PUT", "/gitlab/faults", json={"rate_limit_per_minute": 1})
    raw(sandbox, "/api/v4/version")
    limited = raw(sandbox, "/api/v4/version")

    assert limited.status_code == 429
    assert limited.headers["Content-Type"].startswith("text/plain")
    assert limited.text == "Retry later\n"
    assert 55 <= int(limited.headers["Retry-After"]) <= 60
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Observed", "RateLimit-Name"):
        assert header in limited.headers
    assert limited.headers["RateLimit-Remaining"] == "0"


def test_5xx_is_retried(hook, gitlab_env, sandbox):
    admin(
        sandbox,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "get_project", "kind": "server_error", "count": 2, "status": 502},
    )
    assert hook.client.projects.get(ENGAGEMENTS).path == "engagements"
    assert gitlab_env.call_counts() == {"get_project": 3}

    admin(
        sandbox,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "graphql", "kind": "server_error", "count": 1, "status": 503},
    )
    assert hook.graphql_query("{ currentUser { username } }")
    assert gitlab_env.call_counts()["graphql"] == 2


@pytest.mark.parametrize("status", [502, 504])
def test_a_write_whose_answer_is_lost_is_not_sent_again(hook, gitlab_env, sandbox, status):
    """A proxy's 502/504 after GitLab wrote: python-gitlab's transient-error retry would POST again
    and open a second issue or note. Writes are not retried; the error names the endpoint, and the
    job's marker checks find what was written on its next run."""
    admin(
        sandbox,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "create_issue", "kind": "answer_lost", "count": 1, "status": status},
    )
    with pytest.raises(GitLabApiError) as raised:
        hook.create_issue(ENGAGEMENTS, "Lost answer: Rollout", "written once")
    assert raised.value.status == status and raised.value.endpoint == f"POST /projects/{ENGAGEMENTS}/issues"
    [written] = [issue for issue in hook.list_issues(ENGAGEMENTS) if issue.title == "Lost answer: Rollout"]
    assert gitlab_env.call_counts()["create_issue"] == 1

    admin(
        sandbox,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "create_note", "kind": "answer_lost", "count": 1, "status": status},
    )
    with pytest.raises(GitLabApiError):
        hook.create_note(ENGAGEMENTS, written.iid, "a note written once")
    assert [note.body for note in hook.list_notes(ENGAGEMENTS, written.iid)].count("a note written once") == 1

    # reads are still retried through a 5xx
    admin(
        sandbox,
        "POST",
        "/gitlab/faults/script",
        json={"endpoint": "list_notes", "kind": "server_error", "count": 1, "status": status},
    )
    assert len(list(hook.list_notes(ENGAGEMENTS, written.iid))) >= 1
    assert gitlab_env.call_counts()["list_notes"] >= 2  # the 5xx, then the retry
