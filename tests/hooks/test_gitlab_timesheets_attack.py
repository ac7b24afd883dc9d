"""The hook's timelog listing attacked at page boundaries (issue #20): 99, 100, 101 and 201 timelogs
that all share one ``spentAt`` (every tie across a page boundary), with and without pages that repeat
the end of the page before, as an unstable tie-break would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ps_integrations.hooks.gitlab import GitLabHook
from tests.hooks.test_gitlab_hook_operations import TIME_TRACKING, gitlab_env  # noqa: F401 - the fixture


@pytest.mark.parametrize("count", [99, 100, 101, 201])
@pytest.mark.parametrize("overlap", [0, 3])
def test_tied_timelogs_across_page_boundaries_are_each_counted_once(gitlab_env, count, overlap):  # noqa: F811
    backend = gitlab_env.backend
    backend.timelog_page_overlap = overlap
    issue = next(i for i in backend.issues.values() if i.project_id == backend.project(TIME_TRACKING).id)
    user = next(u for u in backend.users.values() if ".ps" in u.username)
    moment = datetime(2027, 3, 3, 12, 0, tzinfo=UTC)  # a quiet day: only these timelogs
    made = {backend.add_timelog(issue, user, 60 + n, moment, None).id for n in range(count)}
    hook = GitLabHook()

    listing = hook.list_timelogs(hook.group_gid("professional-services"), "2027-03-02", "2027-03-04")

    assert sorted(int(t.id) for t in listing.timelogs) == sorted(made)
    assert sum(t.seconds for t in listing.timelogs) == sum(60 + n for n in range(count))
    pages = 1 if count <= 100 else 1 + -(-(count - 100) // (100 - overlap))
    assert (listing.pages, listing.duplicates) == (pages, overlap * (pages - 1))
    [(figure_count, seconds)] = hook.timelog_figures(
        hook.group_gid("professional-services"), [("2027-03-02", "2027-03-04")]
    )
    assert (figure_count, seconds) == (count, sum(60 + n for n in range(count)))


def test_a_non_utc_server_answers_times_with_its_offset_and_date_only_spend_is_its_midnight(gitlab_env):  # noqa: F811
    backend = gitlab_env.backend
    backend.server_timezone = "Pacific/Auckland"
    issue = next(i for i in backend.issues.values() if i.project_id == backend.project(TIME_TRACKING).id)
    user = next(u for u in backend.users.values() if ".ps" in u.username)
    backend.add_note(backend.project(TIME_TRACKING), issue.iid, user, "/spend 3h 2027-03-03")
    hook = GitLabHook()

    listing = hook.list_timelogs(hook.group_gid("professional-services"), "2027-03-02", "2027-03-04")

    [spent] = [t for t in listing.timelogs if t.seconds == 3 * 3600]
    assert spent.spent_at == "2027-03-03T00:00:00+13:00"  # NZDT: what Time#iso8601 gives in the server's zone
