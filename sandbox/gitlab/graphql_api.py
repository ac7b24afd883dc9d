"""GitLab's GraphQL API, a subset written with GitLab's own type, field and argument names,
executed by graphql-core against the same backend as REST.

Covered: ``timelogs`` (on Query, Group and Project), ``currentUser``, ``group``, ``project``,
``issue``, ``workItem`` (widgets: hierarchy with ``parent``, labels);
timelog nodes with ``id spentAt timeSpent summary note user issue project``; issues
with ``labels``, ``epic``, ``assignees``, ``state``, ``closedAt``, ``webUrl``. Connections have
``nodes``, ``edges { cursor node }``, ``pageInfo``, ``count`` and (timelogs) ``totalSpentTime``.
Page size: ``first`` up to 100 (the default). Unknown fields and bad arguments come back in
``errors`` as graphql-core (and GitLab) report them.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from graphql import GraphQLError, build_schema, graphql_sync

from sandbox.gitlab.models import GitLabBackend, Issue, Timelog, User, iso, parse_time

MAX_PAGE_SIZE = 100
EPIC_WORK_ITEM_OFFSET = 1_000_000  # epics' work items have ids of their own, apart from the issues'
NO_ACCESS = (
    "The resource that you are attempting to access does not exist or you don't have permission to perform this action"
)

SDL = """
scalar Time
scalar BigInt
scalar GroupID
scalar ProjectID
scalar IssueID
scalar UserID
scalar TimelogID
scalar NoteID
scalar EpicID
scalar LabelID
scalar WorkItemID

enum TimelogSort { SPENT_AT_ASC SPENT_AT_DESC TIME_SPENT_ASC TIME_SPENT_DESC CREATED_AT_ASC CREATED_AT_DESC }
enum IssueState { opened closed locked all }

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }

type UserCore { id: UserID! username: String! name: String! state: String! webUrl: String! publicEmail: String }
type UserCoreEdge { cursor: String! node: UserCore }
type UserCoreConnection { count: Int! nodes: [UserCore] edges: [UserCoreEdge] pageInfo: PageInfo! }

type Label { id: LabelID! title: String! color: String! description: String }
type LabelEdge { cursor: String! node: Label }
type LabelConnection { count: Int! nodes: [Label] edges: [LabelEdge] pageInfo: PageInfo! }

type Epic { id: EpicID! iid: ID! title: String! state: String! webUrl: String! }

type Note { id: NoteID! body: String! author: UserCore createdAt: Time! system: Boolean! }

type Project {
  id: ID!
  fullPath: ID!
  name: String!
  webUrl: String
  timelogs(startDate: Time, endDate: Time, startTime: Time, endTime: Time, username: String,
           sort: TimelogSort, first: Int, after: String, last: Int, before: String): TimelogConnection
  issue(iid: String!): Issue
}

type Group {
  id: ID!
  fullPath: ID!
  name: String!
  webUrl: String!
  timelogs(startDate: Time, endDate: Time, startTime: Time, endTime: Time, username: String,
           sort: TimelogSort, first: Int, after: String, last: Int, before: String): TimelogConnection
}

type Issue {
  id: IssueID!
  iid: String!
  title: String!
  description: String
  webUrl: String!
  state: IssueState!
  createdAt: Time!
  updatedAt: Time!
  closedAt: Time
  dueDate: Time
  confidential: Boolean!
  labels(first: Int, after: String): LabelConnection
  assignees(first: Int, after: String): UserCoreConnection
  author: UserCore!
  epic: Epic
  projectId: Int!
  reference(full: Boolean): String!
  totalTimeSpent: Int!
  timeEstimate: Int!
}

type Timelog {
  id: TimelogID!
  spentAt: Time
  timeSpent: Int!
  summary: String
  note: Note
  user: UserCore!
  issue: Issue
  project: Project!
}
type TimelogEdge { cursor: String! node: Timelog }
type TimelogConnection {
  count: Int!
  totalSpentTime: BigInt!
  nodes: [Timelog]
  edges: [TimelogEdge]
  pageInfo: PageInfo!
}

# Work items (issue #20): an issue is a work item with the same global id number; an issue's parent
# (its epic, on Premium/Ultimate) is read from the hierarchy widget.
enum WorkItemWidgetType { HIERARCHY LABELS }
interface WorkItemWidget { type: WorkItemWidgetType }
type WorkItemType { id: ID! name: String! }
type WorkItemWidgetHierarchy implements WorkItemWidget {
  type: WorkItemWidgetType
  hasParent: Boolean!
  parent: WorkItem
  hasChildren: Boolean!
}
type WorkItemWidgetLabels implements WorkItemWidget { type: WorkItemWidgetType labels: LabelConnection }
type WorkItem {
  id: WorkItemID!
  iid: String!
  title: String!
  state: String!
  webUrl: String
  workItemType: WorkItemType!
  widgets: [WorkItemWidget!]
}

type Query {
  currentUser: UserCore
  workItem(id: WorkItemID!): WorkItem
  group(fullPath: ID!): Group
  project(fullPath: ID!): Project
  issue(id: IssueID!): Issue
  timelogs(startDate: Time, endDate: Time, startTime: Time, endTime: Time, groupId: GroupID,
           projectId: ProjectID, username: String, sort: TimelogSort,
           first: Int, after: String, last: Int, before: String): TimelogConnection
}
"""

SCHEMA = build_schema(SDL)
# GitLab Free/CE (issue #20): no epics, so no Epic type and no Issue.epic - a query asking for it
# is refused whole, as on gitlab.com Free ("Field 'epic' doesn't exist on type 'Issue'").
FREE_SDL = SDL.replace("  epic: Epic\n", "").replace(
    "type Epic { id: EpicID! iid: ID! title: String! state: String! webUrl: String! }\n", ""
)
FREE_SCHEMA = build_schema(FREE_SDL)


def gid(kind: str, number: int) -> str:
    return f"gid://gitlab/{kind}/{number}"


def parse_gid(value: str, kind: str) -> int:
    prefix = f"gid://gitlab/{kind}/"
    if not str(value).startswith(prefix) or not str(value)[len(prefix) :].isdigit():
        raise GraphQLError(f'"{value}" is not a valid Global ID')
    return int(str(value)[len(prefix) :])


def cursor(position: int) -> str:
    return base64.b64encode(json.dumps({"id": str(position)}).encode()).decode()


def decode_cursor(value: str) -> int:
    try:
        return int(json.loads(base64.b64decode(value))["id"])
    except (ValueError, KeyError, TypeError):
        raise GraphQLError("Please provide a valid cursor") from None


def connection(
    items: list[Any], first: int | None, after: str | None, extra: dict[str, Any] | None = None, overlap: int = 0
) -> dict[str, Any]:
    """One page of a connection. ``overlap``: a page after a cursor starts that many nodes early,
    repeating the end of the previous page (what an unstable tie-break on equal sort keys does)."""
    if first is not None and first < 0:
        raise GraphQLError("first must be greater than or equal to 0")
    size = min(first if first is not None else MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    start = max(decode_cursor(after) + 1 - overlap, 0) if after else 0
    page = items[start : start + size]
    edges = [{"cursor": cursor(start + index), "node": node} for index, node in enumerate(page)]
    return {
        "count": len(items),
        "nodes": page,
        "edges": edges,
        "pageInfo": {
            "hasNextPage": start + size < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
        **(extra or {}),
    }


class Resolvers:
    """Turns backend objects into the dicts graphql-core's default resolvers read."""

    def __init__(self, backend: GitLabBackend, current: User) -> None:
        self.backend = backend
        self.current = current

    def time(self, moment: datetime | None) -> str | None:
        """A ``Time`` value: GitLab renders ``value.iso8601`` in the server's ``Time.zone``, so a
        non-UTC server answers with its offset (``2026-10-10T00:00:00+13:00``)."""
        if moment is None or self.backend.server_timezone == "UTC":
            return iso(moment)
        return moment.astimezone(self.backend.server_zone).isoformat(timespec="seconds")

    def user(self, user: User) -> dict[str, Any]:
        return {
            "id": gid("User", user.id),
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "webUrl": f"{self.backend.base_url}/{user.username}",
            "publicEmail": None,
        }

    def project(self, project_id: int) -> dict[str, Any]:
        project = self.backend.projects[project_id]

        def timelogs(_info: Any, **kwargs: Any) -> dict[str, Any]:
            return self.timelogs(project_ids={project.id}, **kwargs)

        def issue(_info: Any, iid: str) -> dict[str, Any] | None:
            found = self.backend.issues_by_iid.get((project.id, int(iid)))
            return self.issue(found) if found else None

        return {
            "id": gid("Project", project.id),
            "fullPath": project.path_with_namespace,
            "name": project.name,
            "webUrl": self.backend.web_url(project),
            "timelogs": timelogs,
            "issue": issue,
        }

    def group(self, group_id: int) -> dict[str, Any]:
        group = self.backend.groups[group_id]

        def timelogs(_info: Any, **kwargs: Any) -> dict[str, Any]:
            projects = {project.id for project in self.backend.projects_of_group(group)}
            return self.timelogs(project_ids=projects, **kwargs)

        return {
            "id": gid("Group", group.id),
            "fullPath": group.full_path,
            "name": group.name,
            "webUrl": f"{self.backend.base_url}/groups/{group.full_path}",
            "timelogs": timelogs,
        }

    def issue(self, issue: Issue) -> dict[str, Any]:
        backend = self.backend
        project = backend.projects[issue.project_id]
        epic = backend.epics.get(issue.epic_id) if issue.epic_id else None
        labels = sorted(
            (label for label in backend.labels_visible_to(project=project) if label.name in issue.labels),
            key=lambda label: issue.labels.index(label.name),
        )
        label_nodes = []
        seen = set()
        for label in labels:
            if label.name not in seen:
                seen.add(label.name)
                label_nodes.append(
                    {
                        "id": gid("ProjectLabel", label.id),
                        "title": label.name,
                        "color": label.color,
                        "description": label.description,
                    }
                )
        assignees = [self.user(backend.users[user_id]) for user_id in issue.assignee_ids]
        stats = backend.time_stats(issue)
        return {
            "id": gid("Issue", issue.id),
            "iid": str(issue.iid),
            "title": issue.title,
            "description": issue.description,
            "webUrl": backend.issue_url(issue),
            "state": issue.state,
            "createdAt": self.time(issue.created_at),
            "updatedAt": self.time(issue.updated_at),
            "closedAt": self.time(issue.closed_at),
            "dueDate": f"{issue.due_date}T00:00:00Z" if issue.due_date else None,
            "confidential": issue.confidential,
            "labels": lambda _info, first=None, after=None: connection(label_nodes, first, after),
            "assignees": lambda _info, first=None, after=None: connection(assignees, first, after),
            "author": self.user(backend.users[issue.author_id]),
            "epic": (
                {
                    "id": gid("Epic", epic.id),
                    "iid": str(epic.iid),
                    "title": epic.title,
                    "state": epic.state,
                    "webUrl": f"{backend.base_url}/groups/{backend.groups[epic.group_id].full_path}/-/epics/{epic.iid}",
                }
                if epic
                else None
            ),
            "projectId": issue.project_id,
            "reference": lambda _info, full=False: (
                f"{project.path_with_namespace}#{issue.iid}" if full else f"#{issue.iid}"
            ),
            "totalTimeSpent": stats["total_time_spent"],
            "timeEstimate": stats["time_estimate"],
        }

    def work_item_of_epic(self, epic: Any) -> dict[str, Any]:
        group = self.backend.groups[epic.group_id]
        return {
            "id": gid("WorkItem", EPIC_WORK_ITEM_OFFSET + epic.id),
            "iid": str(epic.iid),
            "title": epic.title,
            "state": "OPEN" if epic.state == "opened" else "CLOSED",
            "webUrl": f"{self.backend.base_url}/groups/{group.full_path}/-/epics/{epic.iid}",
            "workItemType": {"id": "gid://gitlab/WorkItems::Type/8", "name": "Epic"},
            "widgets": [
                {
                    "__typename": "WorkItemWidgetHierarchy",
                    "type": "HIERARCHY",
                    "hasParent": False,
                    "parent": None,
                    "hasChildren": any(i.epic_id == epic.id for i in self.backend.issues.values()),
                },
            ],
        }

    def work_item_of_issue(self, issue: Issue) -> dict[str, Any]:
        """An issue as a work item: its parent is its epic (Premium); Free/CE issues have none."""
        epic = self.backend.epics.get(issue.epic_id) if issue.epic_id and self.backend.has_epics else None
        return {
            "id": gid("WorkItem", issue.id),
            "iid": str(issue.iid),
            "title": issue.title,
            "state": "OPEN" if issue.state == "opened" else "CLOSED",
            "webUrl": self.backend.issue_url(issue),
            "workItemType": {"id": "gid://gitlab/WorkItems::Type/1", "name": "Issue"},
            "widgets": [
                {
                    "__typename": "WorkItemWidgetHierarchy",
                    "type": "HIERARCHY",
                    "hasParent": epic is not None,
                    "parent": self.work_item_of_epic(epic) if epic else None,
                    "hasChildren": False,
                },
                {
                    "__typename": "WorkItemWidgetLabels",
                    "type": "LABELS",
                    "labels": lambda _info, first=None, after=None: connection(
                        [
                            {"id": gid("ProjectLabel", 0), "title": name, "color": "#428BCA", "description": None}
                            for name in issue.labels
                        ],
                        first,
                        after,
                    ),
                },
            ],
        }

    def timelog(self, timelog: Timelog) -> dict[str, Any]:
        note = self.backend.notes.get(timelog.note_id) if timelog.note_id else None
        issue = self.backend.issues.get(timelog.issue_id)
        return {
            "id": gid("Timelog", timelog.id),
            "spentAt": self.time(timelog.spent_at),
            "timeSpent": timelog.time_spent,
            "summary": timelog.summary,
            "note": (
                {
                    "id": gid("Note", note.id),
                    "body": note.body,
                    "author": self.user(self.backend.users[note.author_id]),
                    "createdAt": self.time(note.created_at),
                    "system": note.system,
                }
                if note
                else None
            ),
            "user": self.user(self.backend.users[timelog.user_id]),
            "issue": (lambda _info: self.issue(issue)) if issue else None,
            "project": lambda _info: self.project(timelog.project_id),
        }

    def timelogs(
        self,
        project_ids: set[int] | None = None,
        startDate: str | None = None,
        endDate: str | None = None,
        startTime: str | None = None,
        endTime: str | None = None,
        username: str | None = None,
        sort: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        if startDate and startTime:
            raise GraphQLError("Provide either a start date or time, but not both")
        if endDate and endTime:
            raise GraphQLError("Provide either an end date or time, but not both")
        zone = self.backend.server_zone  # date-only arguments are days of the server's time zone
        lower = _time(startDate or startTime, zone)
        upper = _time(endTime or endDate, zone)
        if upper is not None and endDate:
            upper += timedelta(days=1) - timedelta(microseconds=1)  # endDate includes the whole day
        if lower and upper and lower > upper:
            raise GraphQLError("Start argument must be before End argument")
        user = self.backend.user_by_username(username) if username else None
        if username and user is None:
            return connection([], first, after, {"totalSpentTime": 0})
        timelogs = [
            timelog
            for timelog in self.backend.timelogs.values()
            if (project_ids is None or timelog.project_id in project_ids)
            and (lower is None or timelog.spent_at >= lower)
            and (upper is None or timelog.spent_at <= upper)
            and (user is None or timelog.user_id == user.id)
        ]
        orders = {
            "SPENT_AT_ASC": (lambda t: (t.spent_at, t.id), False),
            "SPENT_AT_DESC": (lambda t: (t.spent_at, t.id), True),
            "TIME_SPENT_ASC": (lambda t: (t.time_spent, t.id), False),
            "TIME_SPENT_DESC": (lambda t: (t.time_spent, t.id), True),
            "CREATED_AT_ASC": (lambda t: (t.created_at, t.id), False),
            "CREATED_AT_DESC": (lambda t: (t.created_at, t.id), True),
        }
        key, reverse = orders.get(sort or "", (lambda t: t.id, True))  # GitLab's default: newest id first
        timelogs.sort(key=key, reverse=reverse)
        total = sum(timelog.time_spent for timelog in timelogs)
        page = connection(
            timelogs, first, after, {"totalSpentTime": str(total)}, overlap=self.backend.timelog_page_overlap
        )
        page["nodes"] = [self.timelog(timelog) for timelog in page["nodes"]]
        for edge in page["edges"]:
            edge["node"] = self.timelog(edge["node"])
        return page

    def root(self) -> dict[str, Any]:
        backend = self.backend

        def group(_info: Any, fullPath: str) -> dict[str, Any] | None:
            found = next((g for g in backend.groups.values() if g.full_path.lower() == fullPath.lower()), None)
            return self.group(found.id) if found else None

        def project(_info: Any, fullPath: str) -> dict[str, Any] | None:
            found = next(
                (p for p in backend.projects.values() if p.path_with_namespace.lower() == fullPath.lower()), None
            )
            return self.project(found.id) if found else None

        def issue(_info: Any, id: str) -> dict[str, Any] | None:
            found = backend.issues.get(parse_gid(id, "Issue"))
            return self.issue(found) if found else None

        def work_item(_info: Any, id: str) -> dict[str, Any] | None:
            number = parse_gid(id, "WorkItem")
            if number in backend.issues:
                return self.work_item_of_issue(backend.issues[number])
            epic = backend.epics.get(number - EPIC_WORK_ITEM_OFFSET) if backend.has_epics else None
            return self.work_item_of_epic(epic) if epic else None

        def timelogs(
            _info: Any, groupId: str | None = None, projectId: str | None = None, **kwargs: Any
        ) -> dict[str, Any]:
            if not (groupId or projectId or kwargs.get("username")):
                raise GraphQLError("Provide at least one argument of the following: groupId, projectId, username")
            project_ids: set[int] | None = None
            if groupId:
                found = backend.groups.get(parse_gid(groupId, "Group"))
                if found is None:
                    raise GraphQLError(NO_ACCESS)
                project_ids = {p.id for p in backend.projects_of_group(found)}
            if projectId:
                project_number = parse_gid(projectId, "Project")
                project_ids = {project_number} if project_ids is None else project_ids & {project_number}
            return self.timelogs(project_ids=project_ids, **kwargs)

        return {
            "currentUser": self.user(self.current),
            "group": group,
            "project": project,
            "issue": issue,
            "timelogs": timelogs,
            "workItem": work_item,
        }


def _time(value: str | None, zone: tzinfo = UTC) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(value, zone).astimezone(UTC)
    except ValueError:
        raise GraphQLError(f"Time: {value} is not a valid date or time") from None


def _callable_resolver(source: Any, info: Any, **kwargs: Any) -> Any:
    value = source.get(info.field_name) if isinstance(source, dict) else getattr(source, info.field_name, None)
    return value(info, **kwargs) if callable(value) else value


def execute(
    backend: GitLabBackend, current: User, query: str, variables: dict[str, Any] | None, operation: str | None
) -> dict[str, Any]:
    with backend.lock:
        result = graphql_sync(
            SCHEMA if backend.has_epics else FREE_SCHEMA,
            query,
            root_value=Resolvers(backend, current).root(),
            variable_values=variables,
            operation_name=operation,
            field_resolver=_callable_resolver,
        )
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    if result.data is not None or not result.errors:
        body["data"] = result.data
    return body
