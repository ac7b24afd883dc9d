"""The GitLab hook's repository and merge-request operations (issues #18, #19): services.yml read at a
ref, branches, one-file commits, comparisons and the merge request that makes services.yml follow Zuora."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ps_integrations.exceptions import GitLabApiError, GitLabNotFoundError
from ps_integrations.hooks.gitlab_records import GitLabNote, joined_labels, note_from
from ps_integrations.hooks.gitlab_transport import WRITE_ONCE, GitLabTransport


class RepositoryOperations:
    # --- repository ------------------------------------------------------------------------------------
    def get_file(self: GitLabTransport, project: str, path: str, ref: str) -> RepositoryFile:
        """``GET /projects/:id/repository/files/:file_path?ref=``: a file's text at a branch, tag or commit.

        :param path: the file's path in the repository (``data/services.yml``).
        :param ref: branch, tag or commit SHA.
        :return: the text (UTF-8) with the blob id and the commits GitLab names; 404 (no such project,
            file or ref) raises :class:`GitLabNotFoundError`.
        """
        handle = self._project(project)
        endpoint = f"GET /projects/{project}/repository/files/{path}"
        raw = self._call(endpoint, lambda: handle.files.get(file_path=path, ref=ref))
        try:
            content = raw.decode().decode("utf-8")
        except UnicodeDecodeError as error:
            raise GitLabApiError(200, endpoint, f"{path} at {ref} is not UTF-8 text: {error}") from None
        return RepositoryFile(
            path=path,
            ref=ref,
            content=content,
            blob_id=str(raw.blob_id),
            last_commit_id=str(getattr(raw, "last_commit_id", "") or ""),
            commit_id=str(getattr(raw, "commit_id", "") or ""),
        )

    # --- merge requests ---
    def get_branch(self: GitLabTransport, project: str, branch: str) -> GitLabBranch | None:
        """``GET /projects/:id/repository/branches/:branch``; None when there is no such branch."""
        handle = self._project(project)
        try:
            raw = self._call(f"GET /projects/{project}/repository/branches", lambda: handle.branches.get(branch))
        except GitLabNotFoundError:
            return None
        return _branch(raw.asdict())

    def create_branch(self: GitLabTransport, project: str, branch: str, ref: str) -> GitLabBranch:
        """``POST /projects/:id/repository/branches`` from ``ref`` (400 when the branch exists)."""
        handle = self._project(project)
        endpoint = f"POST /projects/{project}/repository/branches"
        raw = self._call(endpoint, lambda: handle.branches.create({"branch": branch, "ref": ref}))
        return _branch(raw.asdict())

    def delete_branch(self: GitLabTransport, project: str, branch: str) -> None:
        """``DELETE /projects/:id/repository/branches/:branch``."""
        handle = self._project(project)
        self._call(f"DELETE /projects/{project}/repository/branches", lambda: handle.branches.delete(branch))

    def commit_file(
        self: GitLabTransport,
        project: str,
        branch: str,
        path: str,
        content: str,
        message: str,
        *,
        start_branch: str | None = None,
    ) -> GitLabCommit:
        """``POST /projects/:id/repository/commits`` with one ``update`` action on ``path``.

        :param start_branch: create ``branch`` from this one in the same request.
        """
        body: dict[str, Any] = {
            "branch": branch,
            "commit_message": message,
            "actions": [{"action": "update", "file_path": path, "content": content}],
        }
        if start_branch:
            body["start_branch"] = start_branch
        handle = self._project(project)
        raw = self._call(
            f"POST /projects/{project}/repository/commits", lambda: handle.commits.create(body, **WRITE_ONCE)
        )
        return _commit(raw.asdict())

    def compare(self: GitLabTransport, project: str, from_ref: str, to_ref: str) -> GitLabComparison:
        """``GET /projects/:id/repository/compare?from=&to=``: the commits ``to_ref`` has that the merge
        base of the two has not (oldest first) and the diffs from that merge base."""
        handle = self._project(project)
        endpoint = f"GET /projects/{project}/repository/compare"
        raw = self._call(endpoint, lambda: handle.repository_compare(from_ref, to_ref))
        return GitLabComparison(
            commits=tuple(_commit(commit) for commit in raw.get("commits") or ()),
            diffs=tuple(
                GitLabDiff(
                    old_path=str(diff.get("old_path") or ""),
                    new_path=str(diff.get("new_path") or ""),
                    diff=str(diff.get("diff") or ""),
                    new_file=bool(diff.get("new_file")),
                    deleted_file=bool(diff.get("deleted_file")),
                )
                for diff in raw.get("diffs") or ()
            ),
        )

    def list_merge_requests(
        self: GitLabTransport,
        project: str,
        *,
        source_branch: str | None = None,
        target_branch: str | None = None,
        state: str = "all",
    ) -> list[GitLabMergeRequest]:
        """``GET /projects/:id/merge_requests``, newest first, page by page.

        :param state: ``opened``, ``closed``, ``merged``, ``locked`` or ``all``.
        """
        filters: dict[str, Any] = {"state": state, "order_by": "created_at", "sort": "desc"}
        if source_branch:
            filters["source_branch"] = source_branch
        if target_branch:
            filters["target_branch"] = target_branch
        handle = self._project(project)
        found = self._pages(f"GET /projects/{project}/merge_requests", handle.mergerequests.list, **filters)
        return [_merge_request(project, raw) for raw in found]

    def get_merge_request(self: GitLabTransport, project: str, iid: int) -> GitLabMergeRequest:
        """``GET /projects/:id/merge_requests/:iid``; 404 raises :class:`GitLabNotFoundError`."""
        handle = self._project(project)
        raw = self._call(f"GET /projects/{project}/merge_requests/{iid}", lambda: handle.mergerequests.get(iid))
        return _merge_request(project, raw.asdict())

    def create_merge_request(
        self: GitLabTransport,
        project: str,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        *,
        labels: tuple[str, ...] = (),
        remove_source_branch: bool = True,
    ) -> GitLabMergeRequest:
        """``POST /projects/:id/merge_requests`` (409 while another one is open for the source branch)."""
        fields: dict[str, Any] = {
            "source_branch": source_branch,
            "target_branch": target_branch,
            "title": title,
            "description": description,
            "remove_source_branch": remove_source_branch,
        }
        if labels:
            fields["labels"] = joined_labels(labels)
        handle = self._project(project)
        raw = self._call(
            f"POST /projects/{project}/merge_requests", lambda: handle.mergerequests.create(fields, **WRITE_ONCE)
        )
        return _merge_request(project, raw.asdict())

    def update_merge_request(
        self: GitLabTransport,
        project: str,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
        state_event: str | None = None,
    ) -> GitLabMergeRequest:
        """``PUT /projects/:id/merge_requests/:iid`` with only the given fields.

        :param state_event: ``close`` or ``reopen``.
        """
        fields: dict[str, Any] = {}
        if title is not None:
            fields["title"] = title
        if description is not None:
            fields["description"] = description
        if state_event is not None:
            fields["state_event"] = state_event
        handle = self._project(project)
        endpoint = f"PUT /projects/{project}/merge_requests/{iid}"
        raw = self._call(endpoint, lambda: handle.mergerequests.update(iid, fields))
        return _merge_request(project, raw)

    def close_merge_request(self: GitLabTransport, project: str, iid: int) -> GitLabMergeRequest:
        """Close a merge request (``state_event=close``); closing never merges."""
        return RepositoryOperations.update_merge_request(self, project, iid, state_event="close")

    def create_merge_request_note(self: GitLabTransport, project: str, iid: int, body: str) -> GitLabNote:
        """``POST /projects/:id/merge_requests/:iid/notes``, paced by ``notes_per_minute`` too."""
        request = self._project(project).mergerequests.get(iid, lazy=True)
        endpoint = f"POST /projects/{project}/merge_requests/{iid}/notes"
        raw = self._call(endpoint, lambda: request.notes.create({"body": body}, **WRITE_ONCE), pacer=self._note_pacer)
        return note_from(raw.asdict())


@dataclass(frozen=True)
class RepositoryFile:
    """A repository file at a ref (``GET /projects/:id/repository/files/:path``)."""

    path: str
    ref: str
    content: str  # decoded from GitLab's base64, UTF-8
    blob_id: str  # git's blob SHA: the same content has the same id on every ref
    last_commit_id: str  # the last commit that changed the file, up to ref
    commit_id: str = ""  # the commit ref points at


# --- merge requests ---
@dataclass(frozen=True)
class GitLabBranch:
    name: str
    commit_id: str


@dataclass(frozen=True)
class GitLabCommit:
    id: str
    title: str
    message: str
    author_name: str
    author_email: str
    created_at: str
    parent_ids: tuple[str, ...]


@dataclass(frozen=True)
class GitLabDiff:
    old_path: str
    new_path: str
    diff: str  # unified diff from the first @@ hunk on, as GitLab gives it
    new_file: bool
    deleted_file: bool


@dataclass(frozen=True)
class GitLabComparison:
    commits: tuple[GitLabCommit, ...]
    diffs: tuple[GitLabDiff, ...]


@dataclass(frozen=True)
class GitLabMergeRequest:
    project: str
    iid: int
    id: int
    title: str
    description: str
    state: str  # opened | closed | merged | locked
    source_branch: str
    target_branch: str
    sha: str  # the source branch's head
    web_url: str
    author_username: str
    labels: tuple[str, ...]

    @property
    def reference(self) -> str:
        return f"{self.project}!{self.iid}"


def _branch(raw: dict[str, Any]) -> GitLabBranch:
    return GitLabBranch(name=str(raw.get("name") or ""), commit_id=str((raw.get("commit") or {}).get("id") or ""))


def _commit(raw: dict[str, Any]) -> GitLabCommit:
    return GitLabCommit(
        id=str(raw.get("id") or ""),
        title=str(raw.get("title") or ""),
        message=str(raw.get("message") or ""),
        author_name=str(raw.get("author_name") or ""),
        author_email=str(raw.get("author_email") or ""),
        created_at=str(raw.get("created_at") or ""),
        parent_ids=tuple(str(parent) for parent in raw.get("parent_ids") or ()),
    )


def _merge_request(project: str, raw: dict[str, Any]) -> GitLabMergeRequest:
    return GitLabMergeRequest(
        project=project,
        iid=int(raw["iid"]),
        id=int(raw.get("id") or 0),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        state=str(raw.get("state") or ""),
        source_branch=str(raw.get("source_branch") or ""),
        target_branch=str(raw.get("target_branch") or ""),
        sha=str(raw.get("sha") or ""),
        web_url=str(raw.get("web_url") or ""),
        author_username=str((raw.get("author") or {}).get("username") or ""),
        labels=tuple(str(label) for label in raw.get("labels") or ()),
    )
