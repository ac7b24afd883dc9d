"""The GitLab stand-in's instance settings (issue #20): Free/CE without epics, the server's time zone
for date-only values, overlapping timelog pages - tested on the backend and GraphQL layer, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox.gitlab import graphql_api
from sandbox.gitlab.models import GitLabBackend
from sandbox.gitlab.seed import load


def seeded(**settings) -> GitLabBackend:
    backend = GitLabBackend()
    load(backend, {"generate": {"engineers": 12, "years": 1}, **settings})
    return backend


ISSUE_EPIC = '{ __type(name: "Issue") { fields { name } } }'


def issue_fields(backend: GitLabBackend) -> set[str]:
    bot = backend.users[min(backend.users)]
    result = graphql_api.execute(backend, bot, ISSUE_EPIC, None, None)
    return {field["name"] for field in result["data"]["__type"]["fields"]}


def test_a_free_instance_has_no_epics_and_categories_as_labels():
    premium, free = seeded(), seeded(edition="free")
    assert "epic" in issue_fields(premium) and "epic" not in issue_fields(free)
    assert premium.epics and not free.epics
    bot = free.users[min(free.users)]
    result = graphql_api.execute(free, bot, '{ issue(id: "gid://gitlab/Issue/1") { epic { title } } }', None, None)
    assert "epic" in result["errors"][0]["message"] and "data" not in result
    categories = [i for i in free.issues.values() if "time-category" in i.labels]
    assert {label for i in categories for label in i.labels if label.startswith("timesheet-category::")} == {
        "timesheet-category::Project Work",
        "timesheet-category::PS Internal",
        "timesheet-category::Internal Assisted",
        "timesheet-category::Global Company Meetings",
        "timesheet-category::PTO/Holidays",
    }


def test_date_only_spend_is_midnight_on_the_server():
    backend = seeded(server_timezone="Pacific/Auckland")
    project = backend.project("professional-services/time-tracking")
    issue = next(i for i in backend.issues.values() if i.project_id == project.id)
    user = next(u for u in backend.users.values() if u.role == "engineer")
    backend.add_note(project, issue.iid, user, "/spend 3h 2026-10-10")
    newest = backend.timelogs[max(backend.timelogs)]
    assert (newest.spent_at.astimezone(UTC), newest.time_spent) == (datetime(2026, 10, 9, 11, 0, tzinfo=UTC), 10800)


def test_date_arguments_are_days_on_the_server():
    utc, auckland = seeded(), seeded(server_timezone="Pacific/Auckland")
    query = '{ timelogs(groupId: "gid://gitlab/Group/1", startDate: "2026-06-01", endDate: "2026-06-01") { count } }'
    counts = []
    for backend in (utc, auckland):
        bot = backend.users[min(backend.users)]
        counts.append(graphql_api.execute(backend, bot, query, None, None)["data"]["timelogs"]["count"])
    # the same seeded timelogs (all between 09:00 and 24:00 UTC): Auckland's 1 June ends at 12:00 UTC
    assert counts[0] > counts[1] > 0


def test_overlapping_pages_repeat_the_end_of_the_page_before():
    backend = seeded(timelog_page_overlap=2)
    bot = backend.users[min(backend.users)]
    query = """query($after: String) { timelogs(groupId: "gid://gitlab/Group/1", first: 10, after: $after,
      sort: SPENT_AT_ASC) { pageInfo { endCursor } nodes { id } } }"""
    first = graphql_api.execute(backend, bot, query, {"after": None}, None)["data"]["timelogs"]
    second = graphql_api.execute(backend, bot, query, {"after": first["pageInfo"]["endCursor"]}, None)["data"][
        "timelogs"
    ]
    assert [n["id"] for n in second["nodes"][:2]] == [n["id"] for n in first["nodes"][-2:]]
