"""The GitLab part of a seed.

Section format (all keys optional)::

    gitlab:
      tokens: {<token>: <username>}     # personal access tokens
      edition: premium                  # or free: GitLab Free/CE, no epics anywhere (issue #20)
      server_timezone: UTC              # gitlab.yml time_zone: date-only /spend and date arguments
      timelog_page_overlap: 0           # n > 0: GraphQL timelog pages repeat n nodes of the page before
      generate: {random_seed: 11, end_date: "2026-11-01", engineers: 17, years: 2}
      issues:                           # extra issues: {project, title, description, labels, assignee}
        - {project: professional-services/engagements, title: ..., labels: [a, b]}

The generated instance models the PS group of the handbook:

- group ``professional-services`` with projects ``engagements`` (customer engagement issues),
  ``finance``, ``time-tracking`` (timesheet approval issues and the internal-category issues) and
  ``services-catalog`` (a repository whose ``data/services.yml`` is the real file; the ``main``
  branch changes one price after the ``catalog-2026-10`` branch was cut, so two refs differ);
- users: an integration bot, the Head of PS, delivery managers, finance, and engineers with roles
  (``engineer``, ``project_manager``, ``technical_architect``, ``trainer``);
- epics of the group for the time-tracking categories: Project Work, PS Internal, Internal
  Assisted, Global Company Meetings, PTO/Holidays; each has issues engineers log time on;
- two years of timelogs in quarter hours, with odd ones: 6-minute entries, negative ``/spend``
  corrections and entries near midnight UTC;
- weekly timesheet approval issues (``timesheet::YYYY-Www``) at mixed approval levels
  (``ManagerCertifiedTimesheet``, ``HeadOfPSApproved``, ``FinanceApproved``), a few of them wrong:
  labels out of order, no engineer, a non-engineer assignee.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from ps_integrations import clock
from sandbox.gitlab.models import GitLabBackend, Issue, Project
from sandbox.reference import SERVICES_YML

PS_GROUP = "professional-services"
CATEGORIES = ["Project Work", "PS Internal", "Internal Assisted", "Global Company Meetings", "PTO/Holidays"]
ROLES = ["engineer"] * 9 + ["project_manager"] * 3 + ["technical_architect"] * 3 + ["trainer"] * 2
ROLE_TITLES = {
    "engineer": "Professional Services Engineer",
    "project_manager": "Project Manager",
    "technical_architect": "Technical Architect",
    "trainer": "Technical Instructor",
}
FIRST = [
    "amara",
    "bjorn",
    "chen",
    "dara",
    "emeka",
    "farah",
    "goran",
    "hana",
    "ines",
    "jonas",
    "kavya",
    "liam",
    "mei",
    "noor",
    "oskar",
    "priya",
    "quinn",
    "rafael",
    "sara",
    "tomas",
]
CUSTOMERS = [
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Wayne",
    "Stark",
    "Tyrell",
    "Soylent",
    "Wonka",
    "Oscorp",
    "Aperture",
]
ENGAGEMENTS = ["Implementation", "Migration", "Training", "Embedded Engineer", "Consulting", "Health Check"]


def load(backend: GitLabBackend, seed: dict[str, Any]) -> None:
    backend.edition = str(seed.get("edition") or "premium")
    backend.server_timezone = str(seed.get("server_timezone") or "UTC")
    backend.timelog_page_overlap = int(seed.get("timelog_page_overlap") or 0)
    if seed.get("generate") is not None:
        generate(backend, **(seed.get("generate") or {}))
    for token, username in (seed.get("tokens") or {}).items():
        user = backend.user_by_username(username) or backend.add_user(
            username, username.replace("-", " ").title(), bot=True
        )
        backend.tokens[token] = user.id
    for spec in seed.get("issues") or []:
        project = backend.project(spec["project"])
        author = backend.users[min(backend.users)]
        params: dict[str, Any] = {
            "title": spec["title"],
            "description": spec.get("description", ""),
            "labels": spec.get("labels", []),
        }
        if spec.get("assignee"):
            assignee = backend.user_by_username(spec["assignee"])
            params["assignee_ids"] = [assignee.id] if assignee else []
        backend.create_issue(project, author, params)


def _marker(opportunity_ids: list[str] | None, number: int) -> str:
    if not opportunity_ids or number >= len(opportunity_ids):
        return ""
    return f"\n\n<!-- ps-integrations:opportunity-id={opportunity_ids[number]} -->"


@cache
def _services_yml() -> bytes:
    return SERVICES_YML.read_bytes()


def generate(
    backend: GitLabBackend,
    random_seed: int = 11,
    end_date: str = "2026-11-01",
    engineers: int = 17,
    years: int = 2,
    engagement_opportunities: list[str] | None = None,
) -> None:
    """``engagement_opportunities``: Salesforce opportunity Ids the engagement issues were synced
    from (the opportunity sync's marker in the description), in order; more issues than Ids reuse none."""
    rng = random.Random(random_seed)
    end = date.fromisoformat(end_date)
    start = end - timedelta(days=365 * years)
    created = datetime.combine(start - timedelta(days=30), time(9), UTC)
    backend.clock = clock.now

    bot = backend.add_user("ps-integration-bot", "PS Integration Bot", bot=True)
    head = backend.add_user("head-of-ps", "Morgan Head", role="head_of_ps", job_title="Head of Professional Services")
    managers = [
        backend.add_user(
            f"delivery-manager-{n}", f"Delivery Manager {n}", role="delivery_manager", job_title="Delivery Manager"
        )
        for n in (1, 2)
    ]
    finance = backend.add_user("finance-ops", "Finance Ops", role="finance", job_title="Finance Operations")
    people = []
    for index in range(engineers):
        first = FIRST[index % len(FIRST)]
        role = ROLES[index % len(ROLES)]
        people.append(
            backend.add_user(
                f"{first}.ps{index + 1}", f"{first.title()} PS{index + 1}", role=role, job_title=ROLE_TITLES[role]
            )
        )

    group = backend.add_group(PS_GROUP, "Professional Services")
    engagements = backend.add_project(group, "engagements", "Engagements")
    backend.add_project(group, "finance", "Finance")
    time_tracking = backend.add_project(group, "time-tracking", "Time Tracking")
    catalog = backend.add_project(group, "services-catalog", "Services Catalog")
    for name in (
        "proposal::Closed_Won",
        "ps::todo",
        "ps::in-progress",
        "ps::done",
        "ManagerCertifiedTimesheet",
        "HeadOfPSApproved",
        "FinanceApproved",
    ):
        backend.add_label(name, group=group)

    original = _services_yml()
    first_commit = backend.commit_files(
        catalog, "main", "Add the PS services catalog", bot, {"data/services.yml": original}, created_at=created
    )
    backend.branches[catalog.id]["catalog-2026-10"] = first_commit.id
    changed = original.replace(b"price: 35000", b"price: 37500", 1)
    backend.commit_files(
        catalog,
        "main",
        "Raise the Migration+ price",
        head,
        {"data/services.yml": changed},
        created_at=created + timedelta(days=20),
    )

    # GitLab Free/CE has no epics: there the categories are only the issues' scoped labels
    epics = (
        {name: backend.add_epic(group, name, f"Time-tracking category: {name}") for name in CATEGORIES}
        if backend.has_epics
        else {}
    )

    def issue(
        project: Project, title: str, labels: list[str], assignees: list[int], when: datetime, **extra: Any
    ) -> Issue:
        made = backend.create_issue(
            project, bot, {"title": title, "labels": labels, "assignee_ids": assignees, **extra}, created_at=when
        )
        return made

    engagement_issues = []
    for number in range(12):
        customer = CUSTOMERS[number % len(CUSTOMERS)]
        kind = ENGAGEMENTS[number % len(ENGAGEMENTS)]
        pm = [person for person in people if person.role == "project_manager"][number % 3]
        opened = datetime.combine(start + timedelta(days=rng.randint(0, 365 * years - 60)), time(10), UTC)
        made = issue(
            engagements,
            f"{customer}: {kind}",
            ["ps::in-progress", kind],
            [pm.id],
            opened,
            description=f"Engagement for {customer}.{_marker(engagement_opportunities, number)}",
        )
        made.epic_id = epics["Project Work"].id if epics else None
        if number % 4 == 3:
            made.state = "closed"
            made.closed_at = opened + timedelta(days=rng.randint(20, 60))
            made.closed_by_id = pm.id
            made.updated_at = made.closed_at
        engagement_issues.append(made)

    category_issues = {
        name: issue(
            time_tracking,
            f"{name} - time tracking",
            ["time-category", f"timesheet-category::{name}"],
            [],
            created,
            epic_id=epics[name].id if epics else None,
        )
        for name in CATEGORIES
    }

    _timelogs(backend, rng, people, engagement_issues, category_issues, start, end)
    _approvals(backend, rng, time_tracking, people, managers, finance, end)
    backend.clock = clock.now
    del head


def _timelogs(
    backend: GitLabBackend,
    rng: random.Random,
    people: list[Any],
    engagements: list[Issue],
    categories: dict[str, Issue],
    start: date,
    end: date,
) -> None:
    day = start
    while day < end:
        if day.weekday() < 5:
            for person in people:
                if rng.random() < 0.04:
                    entries = [(categories["PTO/Holidays"], 32)]
                else:
                    remaining = 32 + rng.choice([-4, 0, 0, 0, 4])
                    entries = []
                    while remaining > 0:
                        quarters = min(remaining, rng.choice([4, 8, 8, 12, 16]))
                        roll = rng.random()
                        target = (
                            rng.choice(engagements)
                            if roll < 0.65
                            else categories["PS Internal"]
                            if roll < 0.8
                            else categories["Internal Assisted"]
                            if roll < 0.9
                            else categories["Global Company Meetings"]
                        )
                        entries.append((target, quarters))
                        remaining -= quarters
                for target, quarters in entries:
                    hour = rng.choice([9, 10, 13, 14, 16])
                    spent_at = datetime.combine(day, time(hour, rng.choice([0, 15, 30, 45])), UTC)
                    if rng.random() < 0.01:
                        spent_at = datetime.combine(day, time(23, rng.randint(45, 59)), UTC)  # near midnight
                    seconds = quarters * 900
                    if rng.random() < 0.005:
                        seconds = 360  # a 6-minute entry
                    backend.add_timelog(target, person, seconds, spent_at, None, created_at=spent_at)
                    if rng.random() < 0.003:
                        backend.add_timelog(
                            target, person, -900, spent_at + timedelta(hours=1), "correction", created_at=spent_at
                        )
        day += timedelta(days=1)


def _approvals(
    backend: GitLabBackend,
    rng: random.Random,
    project: Project,
    people: list[Any],
    managers: list[Any],
    finance: Any,
    end: date,
) -> None:
    author = managers[0]
    monday = end - timedelta(days=end.weekday())
    for weeks_back in range(1, 9):
        week_start = monday - timedelta(weeks=weeks_back)
        year, week, _ = week_start.isocalendar()
        period = f"timesheet::{year}-W{week:02d}"
        for index, person in enumerate(people):
            level = rng.random()
            labels = [period]
            if weeks_back > 2 or level < 0.8:
                labels.append("ManagerCertifiedTimesheet")
            if weeks_back > 3 or (level < 0.5 and "ManagerCertifiedTimesheet" in labels):
                labels.append("HeadOfPSApproved")
            if weeks_back > 5:
                labels.append("FinanceApproved")
            assignees = [person.id]
            if weeks_back == 2 and index == 0:
                labels = [period, "HeadOfPSApproved"]  # wrong order: Head of PS before the manager
            if weeks_back == 2 and index == 1:
                assignees = []  # no engineer named
            when = datetime.combine(week_start + timedelta(days=7), time(12), UTC)
            backend.create_issue(
                project,
                author,
                {
                    "title": f"Timesheet {period.split('::')[1]} - {person.username}",
                    "labels": labels,
                    "assignee_ids": assignees,
                },
                created_at=when,
            )
        when = datetime.combine(week_start + timedelta(days=7), time(12), UTC)
        if weeks_back == 3:
            backend.create_issue(
                project,
                author,
                {
                    "title": f"Timesheet {period.split('::')[1]} - finance-ops",
                    "labels": [period, "ManagerCertifiedTimesheet"],
                    "assignee_ids": [finance.id],
                },
                created_at=when,
            )
