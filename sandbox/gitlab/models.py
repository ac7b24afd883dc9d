"""GitLab backend: users, groups, projects, labels, issues, notes, links, epics, timelogs, files.

No HTTP here (``standin.py`` is the wire layer). One store backs REST and GraphQL alike, so what
one API writes the other reads back. Not implemented: permissions beyond "the token is valid",
merge requests, milestones (references to them are only recorded), pipelines, webhooks.
Epics are group-level, as in GitLab Premium; the handbook's time-tracking categories are epics
of the PS group (see the seed).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from ps_integrations import clock
from sandbox.gitlab.markdown import (
    extract_quick_actions,
    human_duration,
    mentions,
    parse_duration,
    references,
    split_label_args,
    title_mentions,
    title_references,
)


class GitLabError(Exception):
    """An error in GitLab's REST shape: ``{"message": ...}`` with an HTTP status."""

    def __init__(self, status: int, message: Any):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: str, zone: tzinfo = UTC) -> datetime:
    """ISO 8601 time; a date alone is midnight in ``zone`` (GitLab: the server's ``Time.zone``)."""
    text = value.strip().replace("Z", "+00:00")
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), zone)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def label_scope(name: str) -> str | None:
    """``priority::high`` -> ``priority``; ``a::b::c`` -> ``a::b``; unscoped -> None."""
    return name.rsplit("::", 1)[0] if "::" in name else None


@dataclass
class User:
    id: int
    username: str
    name: str
    email: str
    state: str = "active"
    role: str | None = None
    job_title: str = ""
    bot: bool = False
    public_email: str = ""  # the profile's public e-mail ("" when the user shows none)


@dataclass
class Group:
    id: int
    name: str
    path: str
    full_path: str
    parent_id: int | None = None


@dataclass
class Project:
    id: int
    name: str
    path: str
    group_id: int
    path_with_namespace: str
    default_branch: str = "main"


@dataclass
class Label:
    id: int
    name: str
    color: str = "#6699cc"
    description: str | None = None
    project_id: int | None = None
    group_id: int | None = None


@dataclass
class Note:
    id: int
    issue_id: int
    body: str
    author_id: int
    created_at: datetime
    system: bool = False


@dataclass
class Timelog:
    id: int
    issue_id: int
    project_id: int
    user_id: int
    time_spent: int
    spent_at: datetime
    summary: str | None
    note_id: int | None
    created_at: datetime


@dataclass
class Epic:
    id: int
    iid: int
    group_id: int
    title: str
    description: str = ""
    state: str = "opened"
    labels: list[str] = field(default_factory=list)


@dataclass
class Issue:
    id: int
    iid: int
    project_id: int
    title: str
    description: str
    author_id: int
    created_at: datetime
    updated_at: datetime
    state: str = "opened"
    labels: list[str] = field(default_factory=list)
    assignee_ids: list[int] = field(default_factory=list)
    due_date: str | None = None
    confidential: bool = False
    closed_at: datetime | None = None
    closed_by_id: int | None = None
    epic_id: int | None = None
    time_estimate: int = 0
    discussion_locked: bool = False


@dataclass
class Commit:
    id: str
    parent_ids: list[str]
    message: str
    author_id: int
    created_at: datetime
    files: dict[str, bytes]


@dataclass
class MergeRequest:
    id: int
    iid: int
    project_id: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author_id: int
    created_at: datetime
    updated_at: datetime
    state: str = "opened"  # opened | closed | merged
    labels: list[str] = field(default_factory=list)
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    notes: list[Note] = field(default_factory=list)


def blob_sha(content: bytes) -> str:
    """Git's blob id: sha1 of ``blob <size>\\0<content>``."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content, usedforsecurity=False).hexdigest()


class GitLabBackend:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.base_url = "https://gitlab.example.com"
        self.clock = clock.now
        self.reset_state()

    def reset_state(self) -> None:
        self.users: dict[int, User] = {}
        self.tokens: dict[str, int] = {}
        self.groups: dict[int, Group] = {}
        self.projects: dict[int, Project] = {}
        self.labels: dict[int, Label] = {}
        self.issues: dict[int, Issue] = {}
        self.issues_by_iid: dict[tuple[int, int], Issue] = {}
        self.notes: dict[int, Note] = {}
        self.links: dict[int, tuple[int, int, str]] = {}
        self.epics: dict[int, Epic] = {}
        self.timelogs: dict[int, Timelog] = {}
        self.spent_by_issue: dict[int, int] = {}  # issue id -> seconds, kept with the timelogs
        self.commits: dict[int, dict[str, Commit]] = {}
        self.branches: dict[int, dict[str, str]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.cross_references: list[dict[str, Any]] = []
        self.uploads: dict[str, tuple[int, str, bytes]] = {}  # secret -> (project id, file name, content)
        self.merge_requests: dict[tuple[int, int], MergeRequest] = {}  # (project id, iid) -> merge request
        # instance settings (issue #20), from the seed's gitlab section:
        self.edition = "premium"  # "free": GitLab Free/CE - no epics (REST, GraphQL Issue.epic, /epic)
        self.server_timezone = "UTC"  # gitlab.yml time_zone: date-only arguments and /spend dates
        self.timelog_page_overlap = 0  # > 0: each timelogs page repeats the previous page's last nodes
        self._ids: dict[str, int] = {}
        self._next_iid: dict[int, int] = {}

    @property
    def has_epics(self) -> bool:
        return self.edition != "free"

    @property
    def server_zone(self) -> tzinfo:
        return ZoneInfo(self.server_timezone)

    def add_upload(self, project: Project, filename: str, content: bytes) -> tuple[str, str]:
        """Store a project upload; return (secret, file name) as GitLab's ``/uploads/<secret>/<name>``."""
        secret = hashlib.sha256(b"%d:%d:" % (project.id, len(self.uploads)) + content).hexdigest()[:32]
        self.uploads[secret] = (project.id, filename, content)
        return secret, filename

    def next_id(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    # --- lookups ---------------------------------------------------------------------------------
    def user_for_token(self, token: str | None) -> User | None:
        user_id = self.tokens.get(token or "")
        return self.users.get(user_id) if user_id is not None else None

    def user_by_username(self, username: str) -> User | None:
        return next((user for user in self.users.values() if user.username.lower() == username.lower()), None)

    def group(self, ident: str | int) -> Group:
        key = unquote(str(ident))
        for group in self.groups.values():
            if str(group.id) == key or group.full_path.lower() == key.lower():
                return group
        raise GitLabError(404, "404 Group Not Found")

    def project(self, ident: str | int) -> Project:
        key = unquote(str(ident))
        for project in self.projects.values():
            if str(project.id) == key or project.path_with_namespace.lower() == key.lower():
                return project
        raise GitLabError(404, "404 Project Not Found")

    def issue(self, project: Project, iid: int) -> Issue:
        issue = self.issues_by_iid.get((project.id, int(iid)))
        if issue is None:
            raise GitLabError(404, "404 Not found")
        return issue

    def group_and_descendants(self, group: Group) -> set[int]:
        found = {group.id}
        changed = True
        while changed:
            changed = False
            for candidate in self.groups.values():
                if candidate.parent_id in found and candidate.id not in found:
                    found.add(candidate.id)
                    changed = True
        return found

    def projects_of_group(self, group: Group) -> list[Project]:
        groups = self.group_and_descendants(group)
        return [project for project in self.projects.values() if project.group_id in groups]

    def web_url(self, project: Project) -> str:
        return f"{self.base_url}/{project.path_with_namespace}"

    def issue_url(self, issue: Issue) -> str:
        return f"{self.web_url(self.projects[issue.project_id])}/-/issues/{issue.iid}"

    # --- creation ------------------------------------------------------------------------------
    def add_user(self, username: str, name: str, email: str | None = None, **extra: Any) -> User:
        user = User(self.next_id("user"), username, name, email or f"{username}@example.com", **extra)
        self.users[user.id] = user
        return user

    def add_group(self, path: str, name: str | None = None, parent: Group | None = None) -> Group:
        full_path = f"{parent.full_path}/{path}" if parent else path
        group = Group(self.next_id("group"), name or path, path, full_path, parent.id if parent else None)
        self.groups[group.id] = group
        return group

    def add_project(self, group: Group, path: str, name: str | None = None) -> Project:
        project = Project(self.next_id("project"), name or path, path, group.id, f"{group.full_path}/{path}")
        self.projects[project.id] = project
        self.commits[project.id] = {}
        self.branches[project.id] = {}
        return project

    def ensure_label(self, project: Project, name: str) -> None:
        group_ids = self._ancestors(self.groups[project.group_id])
        for label in self.labels.values():
            if label.name == name and (label.project_id == project.id or label.group_id in group_ids):
                return
        self.add_label(name, project=project)

    def _ancestors(self, group: Group) -> set[int]:
        found = {group.id}
        while group.parent_id is not None:
            group = self.groups[group.parent_id]
            found.add(group.id)
        return found

    def add_label(self, name: str, project: Project | None = None, group: Group | None = None, **extra: Any) -> Label:
        label = Label(
            self.next_id("label"),
            name,
            project_id=project.id if project else None,
            group_id=group.id if group else None,
            **extra,
        )
        self.labels[label.id] = label
        return label

    def labels_visible_to(self, project: Project | None = None, group: Group | None = None) -> list[Label]:
        if project is not None:
            groups = self._ancestors(self.groups[project.group_id])
            return [
                label for label in self.labels.values() if label.project_id == project.id or label.group_id in groups
            ]
        assert group is not None
        groups = self._ancestors(group)
        return [label for label in self.labels.values() if label.group_id in groups]

    def add_epic(self, group: Group, title: str, description: str = "") -> Epic:
        iid = 1 + sum(1 for epic in self.epics.values() if epic.group_id == group.id)
        epic = Epic(self.next_id("epic"), iid, group.id, title, description)
        self.epics[epic.id] = epic
        return epic

    def _set_labels(self, issue: Issue, project: Project, names: list[str]) -> None:
        """Set labels keeping scoped labels exclusive: the last label of a scope wins."""
        result: list[str] = []
        for name in names:
            name = name.strip()
            if not name:
                continue
            scope = label_scope(name)
            if scope is not None:
                result = [existing for existing in result if label_scope(existing) != scope]
            if name not in result:
                result.append(name)
            self.ensure_label(project, name)
        issue.labels = result

    def create_issue(
        self, project: Project, author: User, params: dict[str, Any], created_at: datetime | None = None
    ) -> Issue:
        title = str(params.get("title") or "").strip()
        if not title:
            raise GitLabError(400, {"title": ["can't be blank"]})
        if len(title) > 255:
            raise GitLabError(400, {"title": ["is too long (maximum is 255 characters)"]})
        now = created_at or self.clock()
        iid = self._next_iid.get(project.id, 0) + 1
        self._next_iid[project.id] = iid
        issue = Issue(self.next_id("issue"), iid, project.id, title, "", author.id, now, now)
        self.issues[issue.id] = issue
        self.issues_by_iid[(project.id, iid)] = issue
        self._apply_params(issue, project, author, params, now)
        return issue

    def _apply_params(self, issue: Issue, project: Project, actor: User, params: dict[str, Any], now: datetime) -> None:
        if params.get("title"):
            issue.title = str(params["title"])
            self._scan_title(issue, actor)
        if "labels" in params:
            self._set_labels(issue, project, _as_list(params["labels"]))
        if params.get("add_labels"):
            self._set_labels(issue, project, [*issue.labels, *_as_list(params["add_labels"])])
        if params.get("remove_labels"):
            removed = set(_as_list(params["remove_labels"]))
            issue.labels = [label for label in issue.labels if label not in removed]
        if "assignee_ids" in params:
            ids = [int(value) for value in _as_list(params["assignee_ids"]) if str(value).strip() not in ("", "0")]
            for user_id in ids:
                if user_id not in self.users:
                    raise GitLabError(404, "404 User Not Found")
            issue.assignee_ids = ids
        elif "assignee_id" in params:
            value = params["assignee_id"]
            issue.assignee_ids = [int(value)] if value not in (None, "", 0, "0") else []
        if "due_date" in params:
            issue.due_date = _valid_date(params["due_date"]) if params["due_date"] else None
        if "confidential" in params:
            issue.confidential = _truthy(params["confidential"])
        if "discussion_locked" in params:
            issue.discussion_locked = _truthy(params["discussion_locked"])
        if "epic_id" in params and self.has_epics:  # Free/CE has no epic_id parameter: ignored
            issue.epic_id = int(params["epic_id"]) if params["epic_id"] else None
        if "description" in params:
            text = str(params["description"] or "")
            issue.description, actions = extract_quick_actions(text)
            self._scan_text(issue, actor, issue.description, "description")
            self._run_actions(issue, project, actor, actions, now)
        event = params.get("state_event")
        if event == "close":
            self._close(issue, actor, now)
        elif event == "reopen":
            self._reopen(issue)
        issue.updated_at = now

    def update_issue(self, project: Project, iid: int, actor: User, params: dict[str, Any]) -> Issue:
        issue = self.issue(project, iid)
        if "title" in params and not str(params["title"] or "").strip():
            raise GitLabError(400, {"title": ["can't be blank"]})
        self._apply_params(issue, project, actor, params, self.clock())
        return issue

    def _close(self, issue: Issue, actor: User, now: datetime) -> None:
        if issue.state != "closed":
            issue.state = "closed"
            issue.closed_at = now
            issue.closed_by_id = actor.id

    @staticmethod
    def _reopen(issue: Issue) -> None:
        issue.state = "opened"
        issue.closed_at = None
        issue.closed_by_id = None

    def _scan_text(self, issue: Issue, actor: User, text: str, source: str) -> None:
        for name in mentions(text):
            self.notifications.append(
                {
                    "type": "mention",
                    "username": name,
                    "issue_id": issue.id,
                    "issue_iid": issue.iid,
                    "project_id": issue.project_id,
                    "source": source,
                    "by": actor.username,
                }
            )
        for kind, reference in references(text):
            self.cross_references.append(
                {
                    "kind": kind,
                    "reference": reference,
                    "issue_id": issue.id,
                    "issue_iid": issue.iid,
                    "project_id": issue.project_id,
                    "source": source,
                }
            )

    def _scan_title(self, issue: Issue, actor: User) -> None:
        """Titles mention and reference too (GitLab: ``attr_mentionable :title, pipeline: :single_line``)."""
        for name in title_mentions(issue.title):
            self.notifications.append(
                {
                    "type": "mention",
                    "username": name,
                    "issue_id": issue.id,
                    "issue_iid": issue.iid,
                    "project_id": issue.project_id,
                    "source": "title",
                    "by": actor.username,
                }
            )
        for kind, reference in title_references(issue.title):
            self.cross_references.append(
                {
                    "kind": kind,
                    "reference": reference,
                    "issue_id": issue.id,
                    "issue_iid": issue.iid,
                    "project_id": issue.project_id,
                    "source": "title",
                }
            )

    def _run_actions(self, issue: Issue, project: Project, actor: User, actions: list[Any], now: datetime) -> None:
        for action in actions:
            name, args = action.name, action.args
            if name == "close":
                self._close(issue, actor, now)
            elif name == "reopen":
                self._reopen(issue)
            elif name == "label":
                self._set_labels(issue, project, [*issue.labels, *split_label_args(args)])
            elif name == "relabel":
                self._set_labels(issue, project, split_label_args(args))
            elif name == "unlabel":
                removed = set(split_label_args(args))
                issue.labels = [label for label in issue.labels if removed and label not in removed]
            elif name in ("assign", "reassign"):
                users = [self.user_by_username(token.lstrip("@")) if token != "me" else actor for token in args.split()]
                ids = [user.id for user in users if user is not None]
                issue.assignee_ids = ids if name == "reassign" else list(dict.fromkeys([*issue.assignee_ids, *ids]))
            elif name == "unassign":
                issue.assignee_ids = []
            elif name in ("spend", "spent"):
                parts = args.split()
                when = parts[-1] if parts and _looks_like_date(parts[-1]) else None
                duration = parse_duration(" ".join(parts[:-1] if when else parts))
                if duration:
                    spent_at = parse_time(when, self.server_zone) if when else now
                    self.add_timelog(issue, actor, duration, spent_at, None)
            elif name == "remove_time_spent":
                for timelog in [t for t in self.timelogs.values() if t.issue_id == issue.id]:
                    del self.timelogs[timelog.id]
                self.spent_by_issue[issue.id] = 0
            elif name == "estimate":
                issue.time_estimate = max(parse_duration(args) or 0, 0)
            elif name == "remove_estimate":
                issue.time_estimate = 0
            elif name == "due":
                issue.due_date = _valid_date(args) if _looks_like_date(args) else issue.due_date
            elif name == "remove_due_date":
                issue.due_date = None
            elif name == "title" and args:
                issue.title = args
            elif name == "confidential":
                issue.confidential = True
            elif name == "lock":
                issue.discussion_locked = True
            elif name == "unlock":
                issue.discussion_locked = False
            elif name == "epic" and self.has_epics:
                epic = next((e for e in self.epics.values() if f"&{e.iid}" == args.strip()), None)
                issue.epic_id = epic.id if epic else issue.epic_id
            elif name == "remove_epic":
                issue.epic_id = None

    # --- notes, links, time tracking ---------------------------------------------------------------
    def add_note(
        self, project: Project, iid: int, author: User, body: str, created_at: datetime | None = None
    ) -> tuple[Note | None, list[str]]:
        """Create a note; quick actions in it run. A note of only quick actions is not stored."""
        issue = self.issue(project, iid)
        if not (body or "").strip():
            raise GitLabError(400, {"note": ["can't be blank"]})
        now = created_at or self.clock()
        text, actions = extract_quick_actions(body)
        note = None
        if text.strip():
            note = Note(self.next_id("note"), issue.id, text, author.id, now)
            self.notes[note.id] = note
            self._scan_text(issue, author, text, "note")
        before = len(self.timelogs)
        self._run_actions(issue, project, author, actions, now)
        if note is not None and len(self.timelogs) > before:
            for timelog in list(self.timelogs.values())[before:]:
                timelog.note_id = note.id
        issue.updated_at = now
        return note, [action.name for action in actions]

    def add_timelog(
        self,
        issue: Issue,
        user: User,
        seconds: int,
        spent_at: datetime,
        summary: str | None,
        created_at: datetime | None = None,
    ) -> Timelog:
        timelog = Timelog(
            self.next_id("timelog"),
            issue.id,
            issue.project_id,
            user.id,
            seconds,
            spent_at,
            summary,
            None,
            created_at or self.clock(),
        )
        self.timelogs[timelog.id] = timelog
        self.spent_by_issue[issue.id] = self.spent_by_issue.get(issue.id, 0) + seconds
        return timelog

    def time_stats(self, issue: Issue) -> dict[str, Any]:
        spent = self.spent_by_issue.get(issue.id, 0)
        return {
            "time_estimate": issue.time_estimate,
            "total_time_spent": spent,
            "human_time_estimate": human_duration(issue.time_estimate),
            "human_total_time_spent": human_duration(spent),
        }

    def add_link(
        self, project: Project, iid: int, target_project: Project, target_iid: int, link_type: str = "relates_to"
    ) -> tuple[Issue, Issue]:
        source = self.issue(project, iid)
        target = self.issue(target_project, target_iid)
        if link_type not in ("relates_to", "blocks", "is_blocked_by"):
            raise GitLabError(400, {"link_type": ["is not included in the list"]})
        for existing_source, existing_target, _kind in self.links.values():
            if {existing_source, existing_target} == {source.id, target.id}:
                raise GitLabError(409, "Issue(s) already assigned")
        self.links[self.next_id("link")] = (source.id, target.id, link_type)
        return source, target

    def linked_issues(self, issue: Issue) -> list[tuple[int, Issue, str]]:
        linked = []
        for link_id, (source, target, kind) in self.links.items():
            if source == issue.id:
                linked.append((link_id, self.issues[target], kind))
            elif target == issue.id:
                inverse = {"blocks": "is_blocked_by", "is_blocked_by": "blocks"}.get(kind, kind)
                linked.append((link_id, self.issues[source], inverse))
        return linked

    # --- listing -------------------------------------------------------------------------------------
    def list_issues(
        self, projects: list[Project], params: dict[str, Any], multi: dict[str, list[str]], current: User
    ) -> list[Issue]:
        project_ids = {project.id for project in projects}
        issues = [issue for issue in self.issues.values() if issue.project_id in project_ids]
        state = params.get("state", "all")
        if state in ("opened", "closed"):
            issues = [issue for issue in issues if issue.state == state]
        if params.get("labels"):
            wanted = params["labels"]
            if wanted.lower() == "none":
                issues = [issue for issue in issues if not issue.labels]
            elif wanted.lower() == "any":
                issues = [issue for issue in issues if issue.labels]
            else:
                required = [label.strip() for label in wanted.split(",") if label.strip()]
                issues = [issue for issue in issues if all(label in issue.labels for label in required)]
        if params.get("not[labels]"):
            excluded = {label.strip() for label in params["not[labels]"].split(",")}
            issues = [issue for issue in issues if not excluded & set(issue.labels)]
        if params.get("search"):
            needle = params["search"].lower()
            fields = (params.get("in") or "title,description").split(",")
            issues = [
                issue
                for issue in issues
                if ("title" in fields and needle in issue.title.lower())
                or ("description" in fields and needle in issue.description.lower())
            ]
        for param, attribute, compare in (
            ("updated_after", "updated_at", lambda value, bound: value >= bound),
            ("updated_before", "updated_at", lambda value, bound: value <= bound),
            ("created_after", "created_at", lambda value, bound: value >= bound),
            ("created_before", "created_at", lambda value, bound: value <= bound),
        ):
            if params.get(param):
                bound = parse_time(params[param])
                issues = [issue for issue in issues if compare(getattr(issue, attribute), bound)]
        iids = multi.get("iids[]") or multi.get("iids") or []
        if iids:
            wanted_iids = {int(value) for value in iids}
            issues = [issue for issue in issues if issue.iid in wanted_iids]
        if params.get("assignee_username"):
            user = self.user_by_username(params["assignee_username"])
            issues = [issue for issue in issues if user is not None and user.id in issue.assignee_ids]
        if params.get("assignee_id"):
            value = params["assignee_id"]
            if value.lower() == "none":
                issues = [issue for issue in issues if not issue.assignee_ids]
            elif value.lower() == "any":
                issues = [issue for issue in issues if issue.assignee_ids]
            else:
                issues = [issue for issue in issues if int(value) in issue.assignee_ids]
        if params.get("author_username"):
            author = self.user_by_username(params["author_username"])
            issues = [issue for issue in issues if author is not None and issue.author_id == author.id]
        if params.get("confidential") is not None and params.get("confidential") != "":
            flag = _truthy(params["confidential"])
            issues = [issue for issue in issues if issue.confidential == flag]
        if params.get("scope") == "assigned_to_me":
            issues = [issue for issue in issues if current.id in issue.assignee_ids]
        elif params.get("scope") == "created_by_me":
            issues = [issue for issue in issues if issue.author_id == current.id]
        order_by = params.get("order_by", "created_at")
        if order_by not in (
            "created_at",
            "updated_at",
            "due_date",
            "title",
            "priority",
            "relative_position",
            "label_priority",
            "popularity",
            "weight",
        ):
            raise GitLabError(400, {"error": "order_by does not have a valid value"})
        descending = params.get("sort", "desc") != "asc"

        def sort_key(issue: Issue) -> Any:
            value = {
                "updated_at": issue.updated_at,
                "due_date": issue.due_date or "",
                "title": issue.title.lower(),
            }.get(order_by, issue.created_at)
            return (value, issue.id)

        return sorted(issues, key=sort_key, reverse=descending)

    # --- repository --------------------------------------------------------------------------------
    def commit_files(
        self,
        project: Project,
        branch: str,
        message: str,
        author: User,
        changes: dict[str, bytes | None],
        start_branch: str | None = None,
        created_at: datetime | None = None,
    ) -> Commit:
        branches = self.branches[project.id]
        base_sha = branches.get(branch) or (branches.get(start_branch) if start_branch else None)
        if branch not in branches and start_branch is None and branches:
            raise GitLabError(400, {"message": "You can only create or edit files when you are on a branch"})
        files = dict(self.commits[project.id][base_sha].files) if base_sha else {}
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = content
        now = created_at or self.clock()
        digest = hashlib.sha1(f"{base_sha}{message}{now.isoformat()}{sorted(files)}".encode(), usedforsecurity=False)
        for path in sorted(files):
            digest.update(files[path])
        commit = Commit(digest.hexdigest(), [base_sha] if base_sha else [], message, author.id, now, files)
        self.commits[project.id][commit.id] = commit
        branches[branch] = commit.id
        return commit

    def resolve_ref(self, project: Project, ref: str | None) -> Commit:
        ref = ref or project.default_branch
        sha = self.branches[project.id].get(ref)
        if sha is None:
            matches = [
                commit_id for commit_id in self.commits[project.id] if commit_id.startswith(ref) and len(ref) >= 7
            ]
            sha = matches[0] if len(matches) == 1 else None
        if sha is None:
            raise GitLabError(404, "404 Commit Not Found")
        return self.commits[project.id][sha]

    def read_file(self, project: Project, path: str, ref: str | None) -> tuple[Commit, bytes]:
        commit = self.resolve_ref(project, ref)
        content = commit.files.get(unquote(path))
        if content is None:
            raise GitLabError(404, "404 File Not Found")
        return commit, content

    def last_commit_touching(self, project: Project, path: str, commit: Commit) -> Commit:
        current = commit
        while current.parent_ids:
            parent = self.commits[project.id][current.parent_ids[0]]
            if parent.files.get(path) != current.files.get(path):
                return current
            current = parent
        return current

    # --- branches, compare and merge requests (issue #19) --------------------------------------------
    def create_branch(self, project: Project, branch: str, ref: str) -> str:
        """POST /repository/branches: 400 "Branch already exists" / "Invalid reference name: <ref>"."""
        if not branch or not ref:
            raise GitLabError(400, {"error": "branch is missing" if not branch else "ref is missing"})
        if branch in self.branches[project.id]:
            raise GitLabError(400, "Branch already exists")
        try:
            commit = self.resolve_ref(project, ref)
        except GitLabError:
            raise GitLabError(400, f"Invalid reference name: {ref}") from None
        self.branches[project.id][branch] = commit.id
        return commit.id

    def branch_head(self, project: Project, branch: str) -> Commit:
        sha = self.branches[project.id].get(branch)
        if sha is None:
            raise GitLabError(404, "404 Branch Not Found")
        return self.commits[project.id][sha]

    def delete_branch(self, project: Project, branch: str) -> None:
        self.branch_head(project, branch)
        if branch == project.default_branch:
            raise GitLabError(400, "The default branch of a project cannot be deleted.")
        del self.branches[project.id][branch]

    def _reachable(self, project: Project, commit: Commit) -> list[Commit]:
        """The commit and everything reachable from it, newest first (parents in order)."""
        seen: dict[str, Commit] = {}
        queue = [commit]
        while queue:
            current = queue.pop(0)
            if current.id in seen:
                continue
            seen[current.id] = current
            queue.extend(self.commits[project.id][parent] for parent in current.parent_ids)
        return list(seen.values())

    def compare(self, project: Project, source: str, target: str, straight: bool) -> dict[str, Any]:
        """GET /repository/compare: ``commits`` reachable from ``to`` and not from the merge base of
        ``from`` and ``to`` (``from...to``; ``straight``: ``from..to``), oldest first; ``diffs`` from the
        merge base (``straight``: from ``from``) to ``to``."""
        head, base = self.resolve_ref(project, target), self.resolve_ref(project, source)
        base_ancestors = {commit.id for commit in self._reachable(project, base)}
        merge_base = next((c for c in self._reachable(project, head) if c.id in base_ancestors), base)
        start = base if straight else merge_base
        excluded = {commit.id for commit in self._reachable(project, start)}
        commits = [commit for commit in self._reachable(project, head) if commit.id not in excluded]
        commits.sort(key=lambda commit: (commit.created_at, commit.id))
        return {"start": start, "head": head, "commits": commits, "same": head.id == base.id}

    def create_merge_request(self, project: Project, author: User, params: dict[str, Any]) -> MergeRequest:
        """POST /merge_requests: 409 while another open merge request has the same source and target."""
        for key in ("source_branch", "target_branch", "title"):
            if not params.get(key):
                raise GitLabError(400, {"error": f"{key} is missing"})
        source, target = str(params["source_branch"]), str(params["target_branch"])
        for name in (source, target):
            self.branch_head(project, name)
        for existing in self.merge_requests.values():
            if (
                existing.project_id == project.id
                and existing.state == "opened"
                and (existing.source_branch, existing.target_branch) == (source, target)
            ):
                raise GitLabError(
                    409, [f"Another open merge request already exists for this source branch: !{existing.iid}"]
                )
        now = self.clock()
        iid = 1 + max((mr.iid for mr in self.merge_requests.values() if mr.project_id == project.id), default=0)
        request = MergeRequest(
            self.next_id("merge_request"),
            iid,
            project.id,
            str(params["title"]),
            str(params.get("description") or ""),
            source,
            target,
            author.id,
            now,
            now,
            labels=_as_list(params.get("labels")),
        )
        self.merge_requests[(project.id, iid)] = request
        return request

    def merge_request(self, project: Project, iid: int) -> MergeRequest:
        found = self.merge_requests.get((project.id, iid))
        if found is None:
            raise GitLabError(404, "404 Not found")
        return found

    def update_merge_request(self, project: Project, iid: int, params: dict[str, Any]) -> MergeRequest:
        """PUT /merge_requests/:iid: title, description, labels, state_event close|reopen."""
        request = self.merge_request(project, iid)
        now = self.clock()
        for key in ("title", "description"):
            if key in params:
                setattr(request, key, str(params[key] or ""))
        if "labels" in params:
            request.labels = _as_list(params["labels"])
        event = params.get("state_event")
        if event == "close" and request.state == "opened":
            request.state, request.closed_at = "closed", now
        elif event == "reopen" and request.state == "closed":
            request.state, request.closed_at = "opened", None
        elif event not in (None, "", "close", "reopen"):
            raise GitLabError(400, {"error": "state_event does not have a valid value"})
        request.updated_at = now
        return request

    def merge(self, project: Project, iid: int, actor: User) -> MergeRequest:
        """PUT /merge_requests/:iid/merge, as a person does it (the job never merges): 405 unless open."""
        request = self.merge_request(project, iid)
        if request.state != "opened":
            raise GitLabError(405, "405 Method Not Allowed")
        source = self.branch_head(project, request.source_branch)
        target = self.branch_head(project, request.target_branch)
        now = self.clock()
        message = f"Merge branch '{request.source_branch}' into '{request.target_branch}'\n\nSee merge request !{iid}"
        digest = hashlib.sha1(f"{target.id}{source.id}{now.isoformat()}".encode(), usedforsecurity=False).hexdigest()
        commit = Commit(digest, [target.id, source.id], message, actor.id, now, dict(source.files))
        self.commits[project.id][commit.id] = commit
        self.branches[project.id][request.target_branch] = commit.id
        request.state, request.merged_at, request.merge_commit_sha, request.updated_at = "merged", now, commit.id, now
        return request

    def add_merge_request_note(self, project: Project, iid: int, author: User, body: str) -> Note:
        request = self.merge_request(project, iid)
        if not body.strip():
            raise GitLabError(400, {"note": ["can't be blank"]})
        note = Note(self.next_id("note"), 0, body, author.id, self.clock())
        request.notes.append(note)
        request.updated_at = note.created_at
        return note


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return [item.strip() for item in str(value or "").split(",") if item.strip()]


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def _looks_like_date(text: str) -> bool:
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _valid_date(value: Any) -> str:
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise GitLabError(400, {"error": "due_date is invalid"}) from None


def encode_content(content: bytes) -> str:
    return base64.b64encode(content).decode()
