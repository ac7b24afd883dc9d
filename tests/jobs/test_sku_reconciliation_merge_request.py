"""The services.yml merge request (issue #19) through the real GitLabHook against the GitLab stand-in."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ps_integrations.domain.services_yml_edit import PRICE, Change, Plan
from ps_integrations.hooks.gitlab import GitLabHook
from ps_integrations.jobs.sku_reconciliation.merge_request import MergeRequestSettings, ServicesYmlMergeRequest

CATALOG = "professional-services/services-catalog"
PATH = "data/services.yml"
BRANCH = "ps-integrations/services-yml-follows-zuora"
AS_OF = date(2026, 11, 21)
SETTINGS = MergeRequestSettings(CATALOG, PATH, "main", BRANCH, ("sku-reconciliation",))


@pytest.fixture
def gitlab(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GITLAB_DEFAULT", json.dumps(sandbox.airflow_connections()["gitlab_default"]))
    return sandbox.standin("gitlab")


@pytest.fixture
def hook(gitlab):
    return GitLabHook()


def price(entry_id: str, line: int, old: str, new: str, sku: str = "X") -> Change:
    return Change(PRICE, sku, entry_id, line, old, new, "USD", "Zuora's price.")


BASICS = price("training_sessions_basics", 1, "7000.00", "7700.00", "GL-BAS")
REMOTE = price("training_sessions_basics_remote", 40, "5000.00", "5500.00", "GL-BAS-R")


def keep(hook, *changes):
    main = hook.get_file(CATALOG, PATH, "main")
    return ServicesYmlMergeRequest(hook, SETTINGS).keep(Plan(tuple(changes), ()), main.content, AS_OF)


def changed_lines(hook):
    return [
        line
        for diff in hook.compare(CATALOG, "main", BRANCH).diffs
        for line in diff.diff.splitlines()
        if line[:1] in "+-"
    ]


def open_requests(hook):
    return hook.list_merge_requests(CATALOG, source_branch=BRANCH, state="opened")


def test_one_merge_request_updated_then_closed(hook, gitlab):
    first = keep(hook, BASICS)
    assert first.state == "opened" and first.url.endswith(f"/-/merge_requests/{first.iid}")
    assert changed_lines(hook) == ["-  price: 7000", "+  price: 7700"]
    [request] = open_requests(hook)
    assert request.title == "services.yml follows Zuora: 1 change(s)" and request.labels == ("sku-reconciliation",)
    assert "`training_sessions_basics` (line 1): USD price 7000.00 -> 7700.00. Zuora's price." in request.description

    again = keep(hook, BASICS)
    assert (again.state, again.iid) == ("unchanged", first.iid)
    assert len(hook.compare(CATALOG, "main", BRANCH).commits) == 1  # no second commit

    more = keep(hook, BASICS, REMOTE)
    assert (more.state, more.iid) == ("updated", first.iid)
    assert changed_lines(hook) == ["-  price: 7000", "+  price: 7700", "-  price: 5000", "+  price: 5500"]
    assert [r.iid for r in open_requests(hook)] == [first.iid]  # still one
    assert len(hook.list_merge_requests(CATALOG, source_branch=BRANCH)) == 1

    done = keep(hook)
    assert (done.state, done.iid) == ("closed", first.iid)
    assert open_requests(hook) == [] and hook.get_branch(CATALOG, BRANCH) is None
    assert hook.get_merge_request(CATALOG, first.iid).state == "closed"
    main = gitlab.backend.branch_head(gitlab.backend.project(CATALOG), "main")
    assert b"  price: 7000\n" in main.files[PATH]  # never merged by the job

    # drift comes back with the same change: a new merge request (the job closed the old one)
    back = keep(hook, BASICS)
    assert back.state == "opened" and back.iid != first.iid


def test_a_persons_commit_on_the_branch_is_left_alone(hook, gitlab):
    first = keep(hook, BASICS)
    backend = gitlab.backend
    project = backend.project(CATALOG)
    person = backend.user_by_username("head-of-ps")
    edited = backend.branch_head(project, BRANCH).files[PATH].replace(b"price: 7700", b"price: 7650", 1)
    backend.commit_files(project, BRANCH, "7650 is the agreed price", person, {PATH: edited})
    head = backend.branch_head(project, BRANCH).id

    outcome = keep(hook, BASICS, REMOTE)
    assert outcome.state == "left_alone" and outcome.iid == first.iid
    assert f"{head[:8]} by Morgan Head" in outcome.message and "leaves it alone" in outcome.message
    assert backend.branch_head(project, BRANCH).id == head  # nothing written over the person's edit
    assert keep(hook).state == "left_alone"  # not closed either


def test_target_moved_on_branch_starts_again_from_it(hook, gitlab):
    keep(hook, BASICS)
    backend = gitlab.backend
    project = backend.project(CATALOG)
    main = backend.branch_head(project, "main").files[PATH]
    person = backend.user_by_username("head-of-ps")
    backend.commit_files(
        project, "main", "Rename", person, {PATH: main.replace(b"sow_name: Basic Training", b"sow_name: Basics", 1)}
    )

    outcome = keep(hook, BASICS)
    assert outcome.state == "updated"
    assert changed_lines(hook) == ["-  price: 7000", "+  price: 7700"]  # main's own change is not in the diff
    [commit] = hook.compare(CATALOG, "main", BRANCH).commits
    assert commit.parent_ids == (backend.branch_head(project, "main").id,)


def test_a_run_killed_after_the_commit_opens_the_merge_request_next_time(hook, gitlab):
    main = hook.get_file(CATALOG, PATH, "main")
    from ps_integrations.domain.services_yml_edit import apply_changes
    from ps_integrations.jobs.sku_reconciliation.merge_request import TRAILER

    hook.commit_file(
        CATALOG, BRANCH, PATH, apply_changes(main.content, [BASICS]), f"x\n\n{TRAILER}", start_branch="main"
    )
    outcome = keep(hook, BASICS)
    assert outcome.state == "opened"
    assert len(hook.compare(CATALOG, "main", BRANCH).commits) == 1  # the file was already right: no commit


def test_a_merge_request_closed_by_a_person_is_not_reopened_for_the_same_changes(hook):
    first = keep(hook, BASICS)
    hook.close_merge_request(CATALOG, first.iid)
    assert keep(hook, BASICS).state == "closed_by_person"
    assert keep(hook, BASICS, REMOTE).state == "opened"  # different changes: a new one


def test_an_entry_that_moved_is_not_edited_blindly(hook):
    outcome = keep(hook, price("training_sessions_basics", 3, "7000.00", "7700.00"))
    assert outcome.state == "not_editable" and "not found" in outcome.message
    assert hook.get_branch(CATALOG, BRANCH) is None and open_requests(hook) == []
