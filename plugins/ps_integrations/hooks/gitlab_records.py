"""What the GitLab hook's issue, note and user operations return: plain records built from REST answers.
No python-gitlab here (``hooks/gitlab.py`` is the only module that imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str = ""
    public_email: str = ""
    state: str = "active"


@dataclass(frozen=True)
class GitLabIssue:
    """One issue as the REST API lists it (``time_stats`` included in listings since GitLab 8.x)."""

    project: str
    iid: int
    id: int
    title: str
    description: str
    state: str  # "opened" | "closed"
    labels: tuple[str, ...]
    web_url: str
    created_at: str
    updated_at: str
    closed_at: str | None
    due_date: str | None
    assignees: tuple[GitLabUser, ...]
    author: GitLabUser | None
    confidential: bool
    time_estimate: int  # seconds
    total_time_spent: int  # seconds

    @property
    def reference(self) -> str:
        return f"{self.project}#{self.iid}"


@dataclass(frozen=True)
class GitLabNote:
    id: int
    body: str
    author_username: str
    created_at: str
    system: bool


def user_from(raw: Any) -> GitLabUser | None:
    if not isinstance(raw, dict) or raw.get("id") is None:
        return None
    return GitLabUser(
        id=int(raw["id"]),
        username=str(raw.get("username") or ""),
        name=str(raw.get("name") or ""),
        public_email=str(raw.get("public_email") or raw.get("email") or ""),
        state=str(raw.get("state") or "active"),
    )


def issue_from(project: str, raw: dict[str, Any]) -> GitLabIssue:
    stats = raw.get("time_stats") or {}
    return GitLabIssue(
        project=project,
        iid=int(raw["iid"]),
        id=int(raw.get("id") or 0),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        state=str(raw.get("state") or ""),
        labels=tuple(str(label) for label in raw.get("labels") or ()),
        web_url=str(raw.get("web_url") or ""),
        created_at=str(raw.get("created_at") or ""),
        updated_at=str(raw.get("updated_at") or ""),
        closed_at=str(raw["closed_at"]) if raw.get("closed_at") else None,
        due_date=str(raw["due_date"]) if raw.get("due_date") else None,
        assignees=tuple(user for user in map(user_from, raw.get("assignees") or ()) if user is not None),
        author=user_from(raw.get("author")),
        confidential=bool(raw.get("confidential")),
        time_estimate=int(stats.get("time_estimate") or 0),
        total_time_spent=int(stats.get("total_time_spent") or 0),
    )


def note_from(raw: dict[str, Any]) -> GitLabNote:
    return GitLabNote(
        id=int(raw["id"]),
        body=str(raw.get("body") or ""),
        author_username=str((raw.get("author") or {}).get("username") or ""),
        created_at=str(raw.get("created_at") or ""),
        system=bool(raw.get("system")),
    )


def joined_labels(labels: tuple[str, ...] | list[str]) -> str:
    return ",".join(labels)
