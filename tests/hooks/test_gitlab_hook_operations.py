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


# --- timesheets ---
def test_timelogs_figures_and_page_count_come_back_typed(hook, gitlab_env):
    group = hook.group_gid("professional-services")
    before = hook.requests_made
    listing = hook.list_timelogs(group, "2026-10-18", "2026-10-26", with_epic=True)

    assert listing.timelogs and listing.pages == hook.requests_made - before == -(-len(listing.timelogs) // 100)
    assert listing.duplicates == 0 and len({t.id for t in listing.timelogs}) == len(listing.timelogs)
    assert all(t.id.isdigit() and t.spent_at[:10] >= "2026-10-17" for t in listing.timelogs)
    assert {t.epic_title for t in listing.timelogs if t.project == TIME_TRACKING} - {None}  # asked: Premium
    [(count, seconds)] = hook.timelog_figures(group, [("2026-10-18", "2026-10-26")])
    assert (count, seconds) == (len(listing.timelogs), sum(t.seconds for t in listing.timelogs))


def test_what_the_instance_offers_and_parent_work_items(hook, gitlab_env):
    assert "epic" in hook.type_fields("Issue") and "parent" in hook.type_fields("WorkItemWidgetHierarchy")
    assert hook.type_fields("NoSuchType") == frozenset()
    backend = gitlab_env.backend
    under_epic = [i for i in backend.issues.values() if i.epic_id]
    alone = next(i for i in backend.issues.values() if not i.epic_id)
    wanted = [i.id for i in under_epic[:60]] + [alone.id]  # more than one request of 50

    parents = hook.work_item_parents(wanted)

    assert parents == {i.id: backend.epics[i.epic_id].title for i in under_epic[:60]}
    backend.edition = "free"
    assert "epic" not in hook.type_fields("Issue") and "parent" in hook.type_fields("WorkItemWidgetHierarchy")
    assert hook.work_item_parents(wanted) == {}  # Free/CE: issues have no parent epic
    assert hook.find_epic("professional-services", "PS Internal") is None  # no epics API on Free


def test_members_uploads_and_epics(hook, gitlab_env):
    members = hook.group_members_with_titles("professional-services")
    titles = {member.user.username: member.job_title for member in members}
    assert titles["delivery-manager-1"] == "Delivery Manager"
    markdown = hook.upload_file(TIME_TRACKING, "sheet.xlsx", b"PK\x03\x04")
    assert markdown.startswith("[sheet.xlsx](/uploads/")
    epic = hook.find_epic("professional-services", "PS Internal")
    assert epic is not None and epic.title == "PS Internal"
    issue = hook.create_issue(TIME_TRACKING, "Timesheet", "table")
    hook.add_issue_to_epic("professional-services", epic.iid, issue.id)
    assert issue.id in hook.epic_issue_ids("professional-services", epic.iid)
    with pytest.raises(GitLabApiError):
        hook.add_issue_to_epic("professional-services", 9999, issue.id)


def test_group_member_job_titles(hook, gitlab_env):
    titles = hook.group_member_job_titles("professional-services")
    assert titles["head-of-ps"] == "Head of Professional Services"
    assert set(titles) == {member.username for member in hook.group_members("professional-services")}
    assert gitlab_env.call_counts()["list_group_members"] >= 1
