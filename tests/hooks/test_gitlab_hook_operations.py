"""The GitLab hook's typed operations (issue #16) against the stand-in: dataclasses out, GitLabApiError only."""

from __future__ import annotations

import json
import os
import time

import pytest

from ps_integrations.exceptions import GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab import GitLabHook, GitLabIssue, GitLabNote, GitLabUser
from sandbox.core.faults import FaultConfig

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
    titles = {
        member.user.username: member.job_title for member in hook.group_members_with_titles("professional-services")
    }
    assert titles["head-of-ps"] == "Head of Professional Services"
    assert set(titles) == {member.username for member in hook.group_members("professional-services")}
    assert gitlab_env.call_counts()["list_group_members"] >= 1


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


# --- merge requests (issue #19) -----------------------------------------------------------------------
SERVICES_YML = "data/services.yml"


def test_branch_commit_compare_and_merge_request_round_trip(hook, gitlab_env):
    from ps_integrations.hooks.gitlab import GitLabBranch, GitLabComparison, GitLabMergeRequest

    assert hook.get_branch(CATALOG, "ps-integrations/services-yml") is None
    main = hook.get_file(CATALOG, SERVICES_YML, "main")
    assert main.content.startswith("- id: training_sessions_basics") and len(main.blob_id) == 40
    branch = hook.create_branch(CATALOG, "ps-integrations/services-yml", "main")
    assert branch == GitLabBranch("ps-integrations/services-yml", main.commit_id)
    with pytest.raises(GitLabApiError) as error:
        hook.create_branch(CATALOG, "ps-integrations/services-yml", "main")
    assert error.value.status == 400 and "Branch already exists" in error.value.message

    edited = main.content.replace("  price: 7000\n", "  price: 7700\n", 1)
    commit = hook.commit_file(CATALOG, "ps-integrations/services-yml", SERVICES_YML, edited, "Follow Zuora")
    assert commit.title == "Follow Zuora" and commit.parent_ids == (main.commit_id,)
    assert hook.get_file(CATALOG, SERVICES_YML, "ps-integrations/services-yml").content == edited

    comparison = hook.compare(CATALOG, "main", "ps-integrations/services-yml")
    assert isinstance(comparison, GitLabComparison)
    assert [c.id for c in comparison.commits] == [commit.id]
    assert comparison.commits[0].author_email == "ps-integration-bot@example.com"
    [diff] = comparison.diffs
    changed = [line for line in diff.diff.splitlines() if line[:1] in "+-"]
    assert diff.new_path == SERVICES_YML and changed == ["-  price: 7000", "+  price: 7700"]
    assert diff.diff.startswith("@@ ")

    created = hook.create_merge_request(
        CATALOG, "ps-integrations/services-yml", "main", "services.yml follows Zuora", "1 change", labels=("sku",)
    )
    assert isinstance(created, GitLabMergeRequest)
    assert (created.state, created.sha, created.labels, created.author_username) == (
        "opened",
        commit.id,
        ("sku",),
        "ps-integration-bot",
    )
    with pytest.raises(GitLabApiError) as error:
        hook.create_merge_request(CATALOG, "ps-integrations/services-yml", "main", "again", "")
    assert error.value.status == 409 and f"already exists for this source branch: !{created.iid}" in error.value.message

    listed = hook.list_merge_requests(CATALOG, source_branch="ps-integrations/services-yml", state="opened")
    assert [mr.iid for mr in listed] == [created.iid]
    assert hook.list_merge_requests(CATALOG, source_branch="someone-else") == []
    updated = hook.update_merge_request(CATALOG, created.iid, description="2 changes")
    assert hook.get_merge_request(CATALOG, created.iid).description == updated.description == "2 changes"
    note = hook.create_merge_request_note(CATALOG, created.iid, "Updated by the reconciliation.")
    assert note.body == "Updated by the reconciliation." and note.author_username == "ps-integration-bot"
    closed = hook.close_merge_request(CATALOG, created.iid)
    assert closed.state == "closed"
    assert hook.list_merge_requests(CATALOG, source_branch="ps-integrations/services-yml", state="opened") == []
    assert gitlab_env.backend.branches[gitlab_env.backend.project(CATALOG).id]["main"] == main.commit_id  # not merged
    hook.delete_branch(CATALOG, "ps-integrations/services-yml")
    assert hook.get_branch(CATALOG, "ps-integrations/services-yml") is None


def test_compare_shows_a_persons_commit_on_the_branch(hook, gitlab_env):
    backend = gitlab_env.backend
    project = backend.project(CATALOG)
    hook.create_branch(CATALOG, "follow-zuora", "main")
    main = hook.get_file(CATALOG, SERVICES_YML, "main")
    ours = hook.commit_file(CATALOG, "follow-zuora", SERVICES_YML, main.content + "\n", "ours")
    person = backend.user_by_username("head-of-ps")
    backend.commit_files(project, "follow-zuora", "a person's fix", person, {SERVICES_YML: b"- id: x\n"})
    commits = hook.compare(CATALOG, "main", "follow-zuora").commits
    assert [(c.title, c.author_email) for c in commits] == [
        ("ours", "ps-integration-bot@example.com"),
        ("a person's fix", "head-of-ps@example.com"),
    ]
    assert commits[0].id == ours.id


def test_merge_request_errors_are_typed(hook):
    with pytest.raises(GitLabNotFoundError):
        hook.get_merge_request(CATALOG, 999)
    with pytest.raises(GitLabApiError) as error:
        hook.create_merge_request(CATALOG, "no-such-branch", "main", "t", "")
    assert error.value.status == 404


# --- uploads retried (#23) ---
@pytest.mark.parametrize(("kind", "status"), [("server_error", 502), ("rate_limited", None)])
def test_an_upload_retried_after_a_5xx_or_429_sends_the_whole_file_again(gitlab_env, monkeypatch, kind, status):
    """python-gitlab builds an upload's multipart body once, as a stream, and retries with the same,
    by then exhausted stream under the first Content-Length: the retry sent no bytes and waited for an
    answer until the read timeout, ten times over (the chaos run's hung roll-up, #23)."""
    definition = json.loads(os.environ["AIRFLOW_CONN_GITLAB_DEFAULT"])
    definition["extra"] = {**definition.get("extra", {}), "timeout": 3, "max_retries": 1}
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(definition))
    gitlab_env.configure_faults(FaultConfig(retry_after_scale=0.0))  # Retry-After: 0
    gitlab_env.faults.script("project_upload", kind, 1, status)
    content = b"PK\x03\x04" + bytes(range(256)) * 40

    started = time.monotonic()
    markdown = GitLabHook().upload_file(TIME_TRACKING, "sheet.xlsx", content)

    assert time.monotonic() - started < 3  # no read timeout waited out
    assert gitlab_env.faults.injected[kind] == 1
    secret = markdown.split("/uploads/", 1)[1].split("/", 1)[0]
    assert gitlab_env.backend.uploads[secret][1:] == ("sheet.xlsx", content)
