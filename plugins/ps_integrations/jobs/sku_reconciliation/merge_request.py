"""One merge request that makes services.yml follow Zuora, kept current by every reconciliation run.

The story: read what is on the job's own branch and whether a person committed there (then stop and
say so); with nothing left to change, close the merge request and drop the branch; otherwise write
the edited file onto the branch (recreated from the target when the target moved on) and open or
update the merge request. Never merged by the job. No local state: the branch name, a trailer in
every commit of the job and a marker in the description are the record, so a run killed between
any two calls finishes the work the next time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

from ps_integrations.domain.services_yml_edit import EditError, Plan, apply_changes
from ps_integrations.hooks.gitlab import (
    GitLabBranch,
    GitLabCommit,
    GitLabComparison,
    GitLabMergeRequest,
    GitLabNote,
    RepositoryFile,
)

# every commit the job makes carries this line; a commit without it on the branch is a person's
TRAILER = "Ps-Integrations-Job: ps_sku_reconciliation"
MARKER = "<!-- ps-integrations:services-yml-follows-zuora changes={digest} -->"
MARKER_PREFIX = "<!-- ps-integrations:services-yml-follows-zuora changes="


class ServicesYmlRepository(Protocol):
    """The GitLab operations the merge request needs (``GitLabHook`` has them)."""

    def get_branch(self, project: str, branch: str) -> GitLabBranch | None: ...
    def delete_branch(self, project: str, branch: str) -> None: ...
    def get_file(self, project: str, path: str, ref: str) -> RepositoryFile: ...
    def commit_file(
        self, project: str, branch: str, path: str, content: str, message: str, *, start_branch: str | None = None
    ) -> GitLabCommit: ...
    def compare(self, project: str, from_ref: str, to_ref: str) -> GitLabComparison: ...
    def list_merge_requests(
        self, project: str, *, source_branch: str | None = None, target_branch: str | None = None, state: str = "all"
    ) -> list[GitLabMergeRequest]: ...
    def create_merge_request(
        self,
        project: str,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        *,
        labels: tuple[str, ...] = (),
        remove_source_branch: bool = True,
    ) -> GitLabMergeRequest: ...
    def update_merge_request(
        self,
        project: str,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
        state_event: str | None = None,
    ) -> GitLabMergeRequest: ...
    def create_merge_request_note(self, project: str, iid: int, body: str) -> GitLabNote: ...


@dataclass(frozen=True)
class MergeRequestSettings:
    project: str
    path: str
    target_branch: str
    source_branch: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergeRequestOutcome:
    """What the run did about the merge request, for the run summary and the finance issue."""

    state: str  # opened | updated | unchanged | closed | none | left_alone | closed_by_person | not_editable
    message: str
    iid: int | None = None
    url: str = ""

    @property
    def open(self) -> bool:
        return self.state in ("opened", "updated", "unchanged", "left_alone")


def changes_digest(plan: Plan) -> str:
    data = [[c.kind, c.sku, c.entry_id, c.currency, c.old, c.new, c.name] for c in plan.changes]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def title_of(plan: Plan) -> str:
    return f"services.yml follows Zuora: {len(plan.changes)} change(s)"


def description_of(plan: Plan, as_of: date, source_ref: str) -> str:
    lines = [
        f"services.yml follows Zuora (Zuora is upstream), as the SKU reconciliation of {as_of.isoformat()} found "
        f"against `{source_ref}`. Each change, and why:",
        "",
        *[f"- {change.describe()}" for change in plan.changes],
        "",
        "Only the lines of these values change; comments, order and formatting stay as they are.",
    ]
    if plan.skipped:
        lines += ["", "Left to a person (not changed here):", ""]
        lines += [f"- `{item.entry_id or item.sku}` (SKU {item.sku}): {item.reason}" for item in plan.skipped]
    lines += [
        "",
        "This merge request is kept current by the `ps_sku_reconciliation` job and closed when nothing is left "
        "to change. The job never merges it. If you commit to its branch, the job leaves the branch alone "
        "from then on.",
        "",
        MARKER.format(digest=changes_digest(plan)),
    ]
    return "\n".join(lines)


def _digest_in(description: str) -> str | None:
    start = description.find(MARKER_PREFIX)
    if start < 0:
        return None
    return description[start + len(MARKER_PREFIX) :].split(" ", 1)[0]


def _persons_commits(comparison: GitLabComparison) -> list[GitLabCommit]:
    return [commit for commit in comparison.commits if TRAILER not in commit.message]


def _describe_commits(commits: Sequence[GitLabCommit]) -> str:
    return ", ".join(f"{c.id[:8]} by {c.author_name or c.author_email}" for c in commits)


class ServicesYmlMergeRequest:
    def __init__(self, repository: ServicesYmlRepository, settings: MergeRequestSettings) -> None:
        self.repository = repository
        self.settings = settings

    def keep(self, plan: Plan, target_text: str, as_of: date) -> MergeRequestOutcome:
        """Open, update or close the one merge request so that services.yml follows Zuora."""
        settings = self.settings
        current = self._current_merge_request()
        branch = self.repository.get_branch(settings.project, settings.source_branch)
        if branch is not None:
            edited_by = _persons_commits(
                self.repository.compare(settings.project, settings.target_branch, settings.source_branch)
            )
            if edited_by:
                return MergeRequestOutcome(
                    "left_alone",
                    f"services.yml merge request: a person committed to {settings.source_branch} "
                    f"({_describe_commits(edited_by)}); the job leaves it alone - merge or close it, then the job "
                    "takes over again",
                    current.iid if current else None,
                    current.web_url if current else "",
                )
        if not plan.changes:
            return self._close(current, branch, as_of)
        if current is None and self._closed_by_person(plan):
            return MergeRequestOutcome(
                "closed_by_person",
                "services.yml merge request: a person closed the merge request with these very changes; not "
                "reopened until the changes differ",
            )
        try:
            desired = apply_changes(target_text, plan.changes)
        except EditError as error:
            return MergeRequestOutcome("not_editable", f"services.yml merge request not updated: {error}")
        committed = self._write_branch(branch, desired, plan, as_of)
        return self._open_or_update(current, plan, as_of, committed)

    # --- steps -------------------------------------------------------------------------------------
    def _current_merge_request(self) -> GitLabMergeRequest | None:
        found = self.repository.list_merge_requests(
            self.settings.project,
            source_branch=self.settings.source_branch,
            target_branch=self.settings.target_branch,
            state="opened",
        )
        return found[0] if found else None

    def _closed_by_person(self, plan: Plan) -> bool:
        """The newest merge request of the branch was closed with these same changes (the job closes only
        when nothing is left, so a closed one with changes was closed by a person)."""
        found = self.repository.list_merge_requests(
            self.settings.project, source_branch=self.settings.source_branch, state="closed"
        )
        return bool(found) and _digest_in(found[0].description) == changes_digest(plan)

    def _close(
        self, current: GitLabMergeRequest | None, branch: GitLabBranch | None, as_of: date
    ) -> MergeRequestOutcome:
        settings = self.settings
        if current is None:
            if branch is not None:  # only the job's commits (checked before): a branch left by a killed run
                self.repository.delete_branch(settings.project, settings.source_branch)
            return MergeRequestOutcome("none", "services.yml merge request: nothing to change")
        # the marker says the job closed it, so a later drift with the same changes opens a new one
        closed_by_job = current.description.replace(
            MARKER_PREFIX + (_digest_in(current.description) or ""), MARKER_PREFIX + "none"
        )
        self.repository.update_merge_request(
            settings.project, current.iid, description=closed_by_job, state_event="close"
        )
        # after the close: a crash in between loses the note, never doubles it
        self.repository.create_merge_request_note(
            settings.project,
            current.iid,
            f"Nothing is left to change as of {as_of.isoformat()}: services.yml follows Zuora. Closed.",
        )
        if branch is not None:
            self.repository.delete_branch(settings.project, settings.source_branch)
        return MergeRequestOutcome(
            "closed", f"services.yml merge request !{current.iid} closed: nothing left", current.iid, current.web_url
        )

    def _write_branch(self, branch: GitLabBranch | None, desired: str, plan: Plan, as_of: date) -> bool:
        """The branch holds ``desired``, one commit on the target's head; returns whether a commit was made."""
        settings, repository = self.settings, self.repository
        message = (
            f"services.yml follows Zuora ({len(plan.changes)} change(s), as of {as_of.isoformat()})\n\n"
            + "\n".join(f"- {change.describe()}" for change in plan.changes)
            + f"\n\n{TRAILER}\n"
        )
        if branch is not None:
            target = repository.get_branch(settings.project, settings.target_branch)
            ours = repository.compare(settings.project, settings.target_branch, settings.source_branch).commits
            based_on_target = target is not None and (
                target.commit_id in ours[0].parent_ids if ours else branch.commit_id == target.commit_id
            )
            if based_on_target:
                if repository.get_file(settings.project, settings.path, settings.source_branch).content == desired:
                    return False
                repository.commit_file(settings.project, settings.source_branch, settings.path, desired, message)
                return True
            # the target moved on: start again from its head so the diff holds only the changes
            repository.delete_branch(settings.project, settings.source_branch)
        repository.commit_file(
            settings.project,
            settings.source_branch,
            settings.path,
            desired,
            message,
            start_branch=settings.target_branch,
        )
        return True

    def _open_or_update(
        self, current: GitLabMergeRequest | None, plan: Plan, as_of: date, committed: bool
    ) -> MergeRequestOutcome:
        settings = self.settings
        title, description = title_of(plan), description_of(plan, as_of, settings.target_branch)
        if current is None:
            created = self.repository.create_merge_request(
                settings.project,
                settings.source_branch,
                settings.target_branch,
                title,
                description,
                labels=settings.labels,
            )
            return MergeRequestOutcome(
                "opened",
                f"services.yml merge request !{created.iid} opened: {len(plan.changes)} change(s)",
                created.iid,
                created.web_url,
            )
        if _digest_in(current.description) == changes_digest(plan) and current.title == title and not committed:
            return MergeRequestOutcome(
                "unchanged", f"services.yml merge request !{current.iid} unchanged", current.iid, current.web_url
            )
        self.repository.update_merge_request(settings.project, current.iid, title=title, description=description)
        return MergeRequestOutcome(
            "updated",
            f"services.yml merge request !{current.iid} updated: {len(plan.changes)} change(s)",
            current.iid,
            current.web_url,
        )


if TYPE_CHECKING:  # the real hook has every operation the merge request needs
    from ps_integrations.hooks.gitlab import GitLabHook

    _HOOK_FITS: type[ServicesYmlRepository] = GitLabHook
