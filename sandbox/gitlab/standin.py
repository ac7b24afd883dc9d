"""GitLab's wire protocol: REST v4 (``/api/v4``) and GraphQL (``/api/graphql``) over HTTPS.

Auth by ``PRIVATE-TOKEN`` or ``Authorization: Bearer``; 401 ``{"message": "401 Unauthorized"}``
otherwise. Lists paginate exactly as GitLab: ``page``/``per_page`` (default 20, at most 100),
``Link`` (rel next/prev/first/last) and ``X-Page``, ``X-Next-Page``, ``X-Prev-Page``,
``X-Per-Page``, ``X-Total``, ``X-Total-Pages``. Rate limiting answers 429 ``text/plain``
``Retry later`` with ``Retry-After`` and the ``RateLimit-*`` headers.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, unquote, urlencode

from werkzeug.routing import PathConverter, Rule
from werkzeug.wrappers import Request, Response

from sandbox.core.faults import Fault
from sandbox.core.standin import StandIn, json_response
from sandbox.gitlab import graphql_api
from sandbox.gitlab.models import (
    GitLabBackend,
    GitLabError,
    Issue,
    MergeRequest,
    Project,
    User,
    blob_sha,
    iso,
    parse_time,
)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
API = "/api/v4"

# Per-endpoint limits of GitLab's ApplicationRateLimiter (Admin > Settings > Network), on top of the
# global throttle: per user, in fixed windows of the limit's interval; over the limit the API answers
# 429 {"message": {"error": ...}} with Retry-After = the interval (API::Helpers::RateLimiter).
APPLICATION_RATE_LIMITS = {"search_rate_limit": 30, "notes_create_limit": 300}
APPLICATION_RATE_LIMIT_ERROR = "This endpoint has been requested too many times. Try again later."


class ApplicationRateLimiter:
    """``Gitlab::ApplicationRateLimiter``: a counter per (limit, user, window); a call over the limit is refused."""

    def __init__(self) -> None:
        self.settings: dict[str, int] = dict(APPLICATION_RATE_LIMITS)
        self.interval_seconds = 60.0
        self.refused: Counter[str] = Counter()
        self._counts: Counter[tuple[str, int, int]] = Counter()
        self._lock = threading.Lock()

    def configure(self, settings: dict[str, Any]) -> None:
        with self._lock:
            self.settings = dict(APPLICATION_RATE_LIMITS)
            for key in APPLICATION_RATE_LIMITS:
                if key in settings:
                    self.settings[key] = int(settings[key])
            self.interval_seconds = float(settings.get("rate_limit_interval_seconds", 60))
            self._counts.clear()
            self.refused.clear()

    def throttled(self, key: str, user_id: int) -> bool:
        limit = self.settings.get(key, 0)
        if not limit:  # 0 disables a limit, as in GitLab
            return False
        with self._lock:
            window = int(time.monotonic() // self.interval_seconds)
            self._counts[(key, user_id, window)] += 1
            if self._counts[(key, user_id, window)] > limit:
                self.refused[key] += 1
                return True
            return False


class FilePathConverter(PathConverter):
    """Repository file paths arrive URL-encoded (``data%2Fservices.yml``); slashes are allowed too."""

    regex = "[^/].*?"


class ApplicationRateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(APPLICATION_RATE_LIMIT_ERROR)
        self.retry_after = retry_after


class GitLabStandIn(StandIn):
    name = "gitlab"
    https = True
    converters = {"filepath": FilePathConverter}
    default_retry_after = 60.0

    def __init__(self) -> None:
        self.backend = GitLabBackend()
        self.application_limits = ApplicationRateLimiter()
        super().__init__()

    def rules(self) -> list[Rule]:
        project = f"{API}/projects/<project_id>"
        issue = f"{project}/issues/<int:iid>"
        group = f"{API}/groups/<group_id>"
        return [
            Rule("/api/graphql", endpoint="graphql", methods=["POST"]),
            Rule(f"{API}/version", endpoint="version", methods=["GET"]),
            Rule(f"{API}/application/settings", endpoint="application_settings", methods=["GET", "PUT"]),
            Rule(f"{API}/user", endpoint="current_user", methods=["GET"]),
            Rule(f"{API}/users", endpoint="list_users", methods=["GET"]),
            Rule(f"{API}/users/<int:user_id>", endpoint="get_user", methods=["GET"]),
            Rule(f"{API}/groups", endpoint="list_groups", methods=["GET"]),
            Rule(group, endpoint="get_group", methods=["GET"]),
            Rule(f"{group}/projects", endpoint="list_group_projects", methods=["GET"]),
            Rule(f"{group}/members/all", endpoint="list_group_members", methods=["GET"]),
            Rule(f"{group}/members", endpoint="list_group_members", methods=["GET"]),
            Rule(f"{group}/labels", endpoint="list_group_labels", methods=["GET"]),
            Rule(f"{group}/issues", endpoint="list_group_issues", methods=["GET"]),
            Rule(f"{group}/epics", endpoint="epics", methods=["GET", "POST"]),
            Rule(f"{group}/epics/<int:epic_iid>", endpoint="get_epic", methods=["GET"]),
            Rule(f"{group}/epics/<int:epic_iid>/issues", endpoint="list_epic_issues", methods=["GET"]),
            Rule(f"{group}/epics/<int:epic_iid>/issues/<int:issue_id>", endpoint="assign_epic_issue", methods=["POST"]),
            Rule(f"{API}/projects", endpoint="list_projects", methods=["GET"]),
            Rule(project, endpoint="get_project", methods=["GET"]),
            Rule(f"{project}/labels", endpoint="project_labels", methods=["GET", "POST"]),
            Rule(f"{project}/issues", endpoint="list_project_issues", methods=["GET"]),
            Rule(f"{project}/issues", endpoint="create_issue", methods=["POST"]),
            Rule(issue, endpoint="get_issue", methods=["GET"]),
            Rule(issue, endpoint="update_issue", methods=["PUT"]),
            Rule(f"{issue}/notes", endpoint="list_notes", methods=["GET"]),
            Rule(f"{issue}/notes", endpoint="create_note", methods=["POST"]),
            Rule(f"{issue}/links", endpoint="issue_links", methods=["GET", "POST"]),
            Rule(f"{issue}/add_spent_time", endpoint="add_spent_time", methods=["POST"]),
            Rule(f"{issue}/reset_spent_time", endpoint="reset_spent_time", methods=["POST"]),
            Rule(f"{issue}/time_stats", endpoint="time_stats", methods=["GET"]),
            Rule(f"{project}/uploads", endpoint="project_upload", methods=["POST"]),
            Rule(f"{project}/repository/files/<filepath:file_path>/raw", endpoint="raw_file", methods=["GET"]),
            Rule(f"{project}/repository/files/<filepath:file_path>", endpoint="file", methods=["GET"]),
            Rule(f"{project}/repository/commits", endpoint="commits", methods=["GET", "POST"]),
            Rule(f"{project}/repository/branches", endpoint="branches", methods=["GET"]),
            # issue #19: branches, compare and merge requests
            Rule(f"{project}/repository/branches", endpoint="create_branch", methods=["POST"]),
            Rule(f"{project}/repository/branches/<filepath:branch>", endpoint="branch", methods=["GET", "DELETE"]),
            Rule(f"{project}/repository/compare", endpoint="compare", methods=["GET"]),
            Rule(f"{project}/merge_requests", endpoint="merge_requests", methods=["GET", "POST"]),
            Rule(f"{project}/merge_requests/<int:mr_iid>", endpoint="merge_request", methods=["GET", "PUT"]),
            Rule(f"{project}/merge_requests/<int:mr_iid>/merge", endpoint="merge_merge_request", methods=["PUT"]),
            Rule(f"{project}/merge_requests/<int:mr_iid>/notes", endpoint="mr_notes", methods=["GET", "POST"]),
        ]

    # --- seed / state ------------------------------------------------------------------------------
    def load_seed(self, seed: dict[str, Any]) -> None:
        from sandbox.gitlab.seed import load

        super().load_seed(seed)
        self.application_limits.configure(seed.get("application_settings") or {})
        with self.backend.lock:
            self.backend.reset_state()
            if self.base_url:
                self.backend.base_url = self.base_url
            load(self.backend, seed)

    def state(self) -> dict[str, Any]:
        backend = self.backend
        with backend.lock:
            return {
                "users": [vars(user) for user in backend.users.values()],
                "projects": [vars(project) for project in backend.projects.values()],
                "issues": [self._issue_json(issue) for issue in backend.issues.values()],
                "notes": [
                    {
                        "id": n.id,
                        "issue_id": n.issue_id,
                        "body": n.body,
                        "author_id": n.author_id,
                        "created_at": iso(n.created_at),
                    }
                    for n in backend.notes.values()
                ],
                "timelog_count": len(backend.timelogs),
                "notifications": list(backend.notifications),
                "cross_references": list(backend.cross_references),
                "application_settings": dict(self.application_limits.settings),
                "application_rate_limited": dict(self.application_limits.refused),
            }

    def airflow_connections(self, ca_bundle: str | None) -> dict[str, dict[str, Any]]:
        token = next(iter(self.seed.get("tokens", {}) or {}), None)
        if token is None:
            return {}
        return {
            "gitlab_default": {
                "conn_type": "ps_gitlab",
                "host": self.base_url,
                "password": token,
                "extra": {"ca_bundle": ca_bundle},
            }
        }

    # --- wire shapes -------------------------------------------------------------------------------
    @staticmethod
    def _error(error: GitLabError) -> Response:
        return json_response({"message": error.message}, error.status)

    def render_server_error(self, status: int) -> Response:
        return json_response(
            {"message": f"{status} {'Internal Server Error' if status == 500 else 'Service Unavailable'}"}, status
        )

    def render_rate_limited(self, fault: Fault) -> Response:
        info = self.faults.rate_limit_info()
        limit = fault.limit or (info.limit if info else 600)
        headers = {
            "Retry-After": str(fault.retry_after),
            "RateLimit-Limit": str(limit),
            "RateLimit-Name": "throttle_authenticated_api",
            "RateLimit-Observed": str(fault.observed or limit + 1),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(fault.reset_at or 0),
        }
        return Response("Retry later\n", status=429, headers=headers, mimetype="text/plain")

    def render_session_expired(self) -> Response:
        return json_response({"message": "401 Unauthorized"}, 401)

    def render_not_found(self, message: str = "404 Not Found") -> Response:
        return json_response({"message": message}, 404)

    def render_bad_request(self, message: str = "400 Bad request") -> Response:
        return json_response({"message": message}, 400)

    def decorate(self, request: Request, response: Response) -> Response:
        info = self.faults.rate_limit_info()
        if info is not None and response.status_code != 429:
            response.headers["RateLimit-Limit"] = str(info.limit)
            response.headers["RateLimit-Observed"] = str(info.observed)
            response.headers["RateLimit-Remaining"] = str(info.remaining)
            response.headers["RateLimit-Reset"] = str(info.reset_at)
            response.headers["RateLimit-Name"] = "throttle_authenticated_api"
        return response

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        # GitLab routes on the raw path: ``projects/group%2Fproject`` is one segment. WSGI decodes
        # %2F into "/", so route on the raw URI with encoded slashes kept.
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw_uri:
            path = raw_uri.split("?", 1)[0]
            environ["PATH_INFO"] = unquote(path.replace("%2F", "%252F").replace("%2f", "%252F"))
        return super().__call__(environ, start_response)

    # --- helpers ----------------------------------------------------------------------------------
    def _check_rate_limit(self, key: str, current: User) -> None:
        """``check_rate_limit!(key, scope: [current_user])``: 429 with Retry-After once over the limit."""
        if self.application_limits.throttled(key, current.id):
            retry_after = max(
                1, math.ceil(self.application_limits.interval_seconds * self.faults.config.retry_after_scale)
            )
            raise ApplicationRateLimited(retry_after)

    def _current(self, request: Request) -> User:
        token = (
            request.headers.get("PRIVATE-TOKEN")
            or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        )
        user = self.backend.user_for_token(token)
        if user is None:
            raise GitLabError(401, "401 Unauthorized")
        return user

    def _handle(self, request: Request, action: Any) -> Response:
        try:
            with self.backend.lock:
                current = self._current(request)
                return action(current)
        except ApplicationRateLimited as limited:
            return json_response(
                {"message": {"error": APPLICATION_RATE_LIMIT_ERROR}}, 429, {"Retry-After": str(limited.retry_after)}
            )
        except GitLabError as error:
            return self._error(error)

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.args.items())
        if request.method in ("POST", "PUT"):
            if request.is_json:
                body = request.get_json(silent=True) or {}
                params.update(body if isinstance(body, dict) else {})
            else:
                form = request.form
                for key in form:
                    values = form.getlist(key)
                    if key.endswith("[]"):
                        params[key[:-2]] = values
                    else:
                        params[key] = values[-1]
        return params

    def _paginate(self, request: Request, items: list[Any], render: Any) -> Response:
        try:
            per_page = int(request.args.get("per_page", DEFAULT_PER_PAGE))
            page = int(request.args.get("page", 1))
        except ValueError:
            raise GitLabError(400, {"error": "per_page is invalid"}) from None
        per_page = max(1, min(per_page, MAX_PER_PAGE))
        page = max(page, 1)
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        base = f"{self.base_url}{request.path}"
        query = [(key, value) for key, value in request.args.items(multi=True) if key not in ("page", "per_page")]

        def link(number: int, rel: str) -> str:
            return f'<{base}?{urlencode([*query, ("page", number), ("per_page", per_page)])}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < total_pages:
            links.append(link(page + 1, "next"))
        links.append(link(1, "first"))
        links.append(link(total_pages, "last"))
        headers["Link"] = ", ".join(links)
        return json_response([render(item) for item in chunk], headers=headers)

    # --- serialisers ---------------------------------------------------------------------------------
    def _user_json(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{self.backend.base_url}/{user.username}",
            "bot": user.bot,
            "job_title": user.job_title,
        }

    def _project_json(self, project: Project) -> dict[str, Any]:
        group = self.backend.groups[project.group_id]
        web_url = self.backend.web_url(project)
        return {
            "id": project.id,
            "name": project.name,
            "path": project.path,
            "path_with_namespace": project.path_with_namespace,
            "name_with_namespace": f"{group.name} / {project.name}",
            "default_branch": project.default_branch,
            "web_url": web_url,
            "namespace": {
                "id": group.id,
                "name": group.name,
                "path": group.path,
                "kind": "group",
                "full_path": group.full_path,
            },
            "visibility": "private",
            "issues_enabled": True,
        }

    def _group_json(self, group: Any) -> dict[str, Any]:
        return {
            "id": group.id,
            "name": group.name,
            "path": group.path,
            "full_path": group.full_path,
            "full_name": group.full_path.replace("/", " / "),
            "parent_id": group.parent_id,
            "web_url": f"{self.backend.base_url}/groups/{group.full_path}",
            "visibility": "private",
        }

    def _issue_json(self, issue: Issue) -> dict[str, Any]:
        backend = self.backend
        project = backend.projects[issue.project_id]
        assignees = [self._user_json(backend.users[user_id]) for user_id in issue.assignee_ids]
        epic = backend.epics.get(issue.epic_id) if issue.epic_id else None
        closed_by = backend.users.get(issue.closed_by_id) if issue.closed_by_id else None
        web_url = backend.issue_url(issue)
        return {
            "id": issue.id,
            "iid": issue.iid,
            "project_id": issue.project_id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at),
            "closed_by": self._user_json(closed_by) if closed_by else None,
            "labels": list(issue.labels),
            "milestone": None,
            "assignees": assignees,
            "assignee": assignees[0] if assignees else None,
            "author": self._user_json(backend.users[issue.author_id]),
            "type": "ISSUE",
            "issue_type": "issue",
            "user_notes_count": sum(
                1 for note in backend.notes.values() if note.issue_id == issue.id and not note.system
            ),
            "merge_requests_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "due_date": issue.due_date,
            "confidential": issue.confidential,
            "discussion_locked": issue.discussion_locked,
            "web_url": web_url,
            "time_stats": backend.time_stats(issue),
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_tasks": False,
            "references": {
                "short": f"#{issue.iid}",
                "relative": f"#{issue.iid}",
                "full": f"{project.path_with_namespace}#{issue.iid}",
            },
            **(
                {
                    "epic_iid": epic.iid if epic else None,
                    "epic": (
                        {"id": epic.id, "iid": epic.iid, "title": epic.title, "group_id": epic.group_id}
                        if epic
                        else None
                    ),
                }
                if backend.has_epics
                else {}  # Free/CE issues have no epic keys
            ),
            "_links": {
                "self": f"{self.base_url}{API}/projects/{project.id}/issues/{issue.iid}",
                "notes": f"{self.base_url}{API}/projects/{project.id}/issues/{issue.iid}/notes",
                "project": f"{self.base_url}{API}/projects/{project.id}",
            },
        }

    def _note_json(self, note: Any) -> dict[str, Any]:
        issue = self.backend.issues[note.issue_id]
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "author": self._user_json(self.backend.users[note.author_id]),
            "created_at": iso(note.created_at),
            "updated_at": iso(note.created_at),
            "system": note.system,
            "noteable_id": issue.id,
            "noteable_type": "Issue",
            "noteable_iid": issue.iid,
            "project_id": issue.project_id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }

    def _label_json(self, label: Any) -> dict[str, Any]:
        return {
            "id": label.id,
            "name": label.name,
            "color": label.color,
            "description": label.description,
            "text_color": "#FFFFFF",
            "is_project_label": label.project_id is not None,
        }

    def _epic_json(self, epic: Any) -> dict[str, Any]:
        group = self.backend.groups[epic.group_id]
        return {
            "id": epic.id,
            "iid": epic.iid,
            "group_id": epic.group_id,
            "title": epic.title,
            "description": epic.description,
            "state": epic.state,
            "labels": list(epic.labels),
            "web_url": f"{self.backend.base_url}/groups/{group.full_path}/-/epics/{epic.iid}",
            "references": {"short": f"&{epic.iid}", "full": f"{group.full_path}&{epic.iid}"},
        }

    # --- handlers: application settings (the per-endpoint rate limits only) ------------------------------
    def application_settings(self, request: Request) -> Response:
        """``GET``/``PUT /application/settings``: ``search_rate_limit``, ``notes_create_limit`` (0 = off)."""

        def action(_current: User) -> Response:
            if request.method == "PUT":
                params = self._params(request)
                changed = {key: params[key] for key in APPLICATION_RATE_LIMITS if key in params}
                try:
                    values = {key: int(value) for key, value in changed.items()}
                except (TypeError, ValueError):
                    raise GitLabError(400, {"error": f"{', '.join(changed)} is invalid"}) from None
                limits = self.application_limits
                limits.configure({**limits.settings, **values, "rate_limit_interval_seconds": limits.interval_seconds})
            return json_response(dict(self.application_limits.settings))

        return self._handle(request, action)

    # --- handlers: GraphQL -------------------------------------------------------------------------
    def graphql(self, request: Request) -> Response:
        def action(current: User) -> Response:
            body = request.get_json(silent=True) or {}
            query = body.get("query")
            if not isinstance(query, str) or not query.strip():
                return json_response({"errors": [{"message": "No query string was present"}]})
            return json_response(
                graphql_api.execute(self.backend, current, query, body.get("variables"), body.get("operationName"))
            )

        return self._handle(request, action)

    # --- handlers: users, groups, projects -------------------------------------------------------------
    def version(self, request: Request) -> Response:
        version = "17.5.0-ee" if self.backend.has_epics else "17.5.0"  # Free/CE: no -ee suffix
        return self._handle(request, lambda _current: json_response({"version": version, "revision": "sandbox"}))

    def current_user(self, request: Request) -> Response:
        return self._handle(
            request, lambda current: json_response({**self._user_json(current), "email": current.email})
        )

    def list_users(self, request: Request) -> Response:
        def action(_current: User) -> Response:
            users = list(self.backend.users.values())
            if request.args.get("username"):
                users = [user for user in users if user.username.lower() == request.args["username"].lower()]
            if request.args.get("search"):
                needle = request.args["search"].lower()
                users = [user for user in users if needle in user.username.lower() or needle in user.name.lower()]
            return self._paginate(request, users, self._user_json)

        return self._handle(request, action)

    def get_user(self, request: Request, user_id: int) -> Response:
        def action(_current: User) -> Response:
            user = self.backend.users.get(user_id)
            if user is None:
                raise GitLabError(404, "404 User Not Found")
            # the single-user endpoint also shows the profile's public e-mail (GitLab's Users API)
            return json_response({**self._user_json(user), "public_email": user.public_email or None})

        return self._handle(request, action)

    def list_groups(self, request: Request) -> Response:
        return self._handle(
            request, lambda _c: self._paginate(request, list(self.backend.groups.values()), self._group_json)
        )

    def get_group(self, request: Request, group_id: str) -> Response:
        return self._handle(request, lambda _c: json_response(self._group_json(self.backend.group(group_id))))

    def list_group_projects(self, request: Request, group_id: str) -> Response:
        def action(_current: User) -> Response:
            group = self.backend.group(group_id)
            projects = (
                self.backend.projects_of_group(group)
                if request.args.get("include_subgroups") == "true"
                else [project for project in self.backend.projects.values() if project.group_id == group.id]
            )
            return self._paginate(request, projects, self._project_json)

        return self._handle(request, action)

    def list_group_members(self, request: Request, group_id: str) -> Response:
        def action(_current: User) -> Response:
            self.backend.group(group_id)
            members = [user for user in self.backend.users.values() if not user.bot]
            return self._paginate(request, members, lambda user: {**self._user_json(user), "access_level": 30})

        return self._handle(request, action)

    def list_group_labels(self, request: Request, group_id: str) -> Response:
        def action(_current: User) -> Response:
            group = self.backend.group(group_id)
            return self._paginate(request, self.backend.labels_visible_to(group=group), self._label_json)

        return self._handle(request, action)

    def list_projects(self, request: Request) -> Response:
        def action(_current: User) -> Response:
            projects = list(self.backend.projects.values())
            if request.args.get("search"):
                needle = request.args["search"].lower()
                projects = [project for project in projects if needle in project.path_with_namespace.lower()]
            return self._paginate(request, projects, self._project_json)

        return self._handle(request, action)

    def get_project(self, request: Request, project_id: str) -> Response:
        return self._handle(request, lambda _c: json_response(self._project_json(self.backend.project(project_id))))

    def project_labels(self, request: Request, project_id: str) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            if request.method == "POST":
                params = self._params(request)
                name = str(params.get("name") or "").strip()
                if not name:
                    raise GitLabError(400, {"error": "name is missing"})
                if any(label.name == name for label in self.backend.labels_visible_to(project=project)):
                    raise GitLabError(409, "Label already exists")
                label = self.backend.add_label(
                    name, project=project, color=params.get("color", "#6699cc"), description=params.get("description")
                )
                return json_response(self._label_json(label), 201)
            return self._paginate(request, self.backend.labels_visible_to(project=project), self._label_json)

        return self._handle(request, action)

    # --- handlers: issues --------------------------------------------------------------------------------
    def _list(self, request: Request, projects: list[Project], current: User) -> Response:
        if request.args.get("search"):
            self._check_rate_limit("search_rate_limit", current)
        params = dict(request.args.items())
        multi = {key: request.args.getlist(key) for key in request.args}
        issues = self.backend.list_issues(projects, params, multi, current)
        return self._paginate(request, issues, self._issue_json)

    def list_project_issues(self, request: Request, project_id: str) -> Response:
        return self._handle(request, lambda current: self._list(request, [self.backend.project(project_id)], current))

    def create_issue(self, request: Request, project_id: str) -> Response:
        def action(current: User) -> Response:
            issue = self.backend.create_issue(self.backend.project(project_id), current, self._params(request))
            return json_response(self._issue_json(issue), 201)

        return self._handle(request, action)

    def list_group_issues(self, request: Request, group_id: str) -> Response:
        def action(current: User) -> Response:
            group = self.backend.group(group_id)
            return self._list(request, self.backend.projects_of_group(group), current)

        return self._handle(request, action)

    def get_issue(self, request: Request, project_id: str, iid: int) -> Response:
        def action(_current: User) -> Response:
            return json_response(self._issue_json(self.backend.issue(self.backend.project(project_id), iid)))

        return self._handle(request, action)

    def update_issue(self, request: Request, project_id: str, iid: int) -> Response:
        def action(current: User) -> Response:
            project = self.backend.project(project_id)
            return json_response(
                self._issue_json(self.backend.update_issue(project, iid, current, self._params(request)))
            )

        return self._handle(request, action)

    def create_note(self, request: Request, project_id: str, iid: int) -> Response:
        def action(current: User) -> Response:
            self._check_rate_limit("notes_create_limit", current)
            body = str(self._params(request).get("body") or "")
            note, commands = self.backend.add_note(self.backend.project(project_id), iid, current, body)
            if note is None:
                # Only quick actions: GitLab answers 202 with what the commands changed.
                return json_response({"commands_changes": dict.fromkeys(commands, True), "summary": commands}, 202)
            return json_response(self._note_json(note), 201)

        return self._handle(request, action)

    def list_notes(self, request: Request, project_id: str, iid: int) -> Response:
        def action(_current: User) -> Response:
            issue = self.backend.issue(self.backend.project(project_id), iid)
            notes = [note for note in self.backend.notes.values() if note.issue_id == issue.id]
            descending = request.args.get("sort", "desc") != "asc"
            notes.sort(key=lambda note: (note.created_at, note.id), reverse=descending)
            return self._paginate(request, notes, self._note_json)

        return self._handle(request, action)

    def issue_links(self, request: Request, project_id: str, iid: int) -> Response:
        def action(current: User) -> Response:
            project = self.backend.project(project_id)
            issue = self.backend.issue(project, iid)
            if request.method == "POST":
                params = self._params(request)
                target_project = self.backend.project(params.get("target_project_id", project.id))
                source, target = self.backend.add_link(
                    project,
                    iid,
                    target_project,
                    int(params.get("target_issue_iid", 0)),
                    params.get("link_type", "relates_to"),
                )
                return json_response(
                    {
                        "source_issue": self._issue_json(source),
                        "target_issue": self._issue_json(target),
                        "link_type": params.get("link_type", "relates_to"),
                    },
                    201,
                )
            linked = [
                {**self._issue_json(other), "issue_link_id": link_id, "link_type": kind}
                for link_id, other, kind in self.backend.linked_issues(issue)
            ]
            return json_response(linked)

        return self._handle(request, action)

    def add_spent_time(self, request: Request, project_id: str, iid: int) -> Response:
        def action(current: User) -> Response:
            from sandbox.gitlab.markdown import parse_duration

            project = self.backend.project(project_id)
            issue = self.backend.issue(project, iid)
            params = self._params(request)
            seconds = parse_duration(str(params.get("duration") or ""))
            if not seconds:
                raise GitLabError(
                    400, {"error": "duration is missing" if not params.get("duration") else "duration is invalid"}
                )
            spent_at = parse_time(params["spent_at"]) if params.get("spent_at") else self.backend.clock()
            self.backend.add_timelog(issue, current, seconds, spent_at, params.get("summary"))
            issue.updated_at = self.backend.clock()
            return json_response(self.backend.time_stats(issue), 201)

        return self._handle(request, action)

    def reset_spent_time(self, request: Request, project_id: str, iid: int) -> Response:
        def action(current: User) -> Response:
            project = self.backend.project(project_id)
            issue = self.backend.issue(project, iid)
            total = self.backend.time_stats(issue)["total_time_spent"]
            if total:
                self.backend.add_timelog(issue, current, -total, self.backend.clock(), None)
            return json_response(self.backend.time_stats(issue))

        return self._handle(request, action)

    def time_stats(self, request: Request, project_id: str, iid: int) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            return json_response(self.backend.time_stats(self.backend.issue(project, iid)))

        return self._handle(request, action)

    def project_upload(self, request: Request, project_id: str) -> Response:
        """``POST /projects/:id/uploads`` (multipart ``file``): the markdown to embed the file."""
        # The body is read before the backend's lock, as GitLab Workhorse takes in an upload before Rails
        # sees the request: a client that stalls mid-body holds up its own request, not the whole instance.
        upload = request.files.get("file")

        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            if upload is None:
                raise GitLabError(400, {"error": "file is missing"})
            name = upload.filename or "file"
            secret, filename = self.backend.add_upload(project, name, upload.read())
            url = f"/uploads/{secret}/{filename}"
            return json_response(
                {
                    "id": len(self.backend.uploads),
                    "alt": filename,
                    "url": url,
                    "full_path": f"/-/project/{project.id}{url}",
                    "markdown": f"[{filename}]({url})",
                },
                201,
            )

        return self._handle(request, action)

    # --- handlers: epics -----------------------------------------------------------------------------------
    def epics(self, request: Request, group_id: str) -> Response:
        def action(_current: User) -> Response:
            self._no_epics_on_free()
            group = self.backend.group(group_id)
            if request.method == "POST":
                params = self._params(request)
                if not params.get("title"):
                    raise GitLabError(400, {"error": "title is missing"})
                return json_response(
                    self._epic_json(self.backend.add_epic(group, params["title"], params.get("description", ""))), 201
                )
            epics = [epic for epic in self.backend.epics.values() if epic.group_id == group.id]
            if request.args.get("search"):
                epics = [epic for epic in epics if request.args["search"].lower() in epic.title.lower()]
            return self._paginate(request, epics, self._epic_json)

        return self._handle(request, action)

    def _no_epics_on_free(self) -> None:
        if not self.backend.has_epics:  # Free/CE does not mount the epics API at all
            raise GitLabError(404, "404 Not Found")

    def _epic(self, group_id: str, epic_iid: int) -> Any:
        self._no_epics_on_free()
        group = self.backend.group(group_id)
        epic = next((e for e in self.backend.epics.values() if e.group_id == group.id and e.iid == epic_iid), None)
        if epic is None:
            raise GitLabError(404, "404 Not found")
        return epic

    def get_epic(self, request: Request, group_id: str, epic_iid: int) -> Response:
        return self._handle(request, lambda _c: json_response(self._epic_json(self._epic(group_id, epic_iid))))

    def list_epic_issues(self, request: Request, group_id: str, epic_iid: int) -> Response:
        def action(_current: User) -> Response:
            epic = self._epic(group_id, epic_iid)
            issues = [issue for issue in self.backend.issues.values() if issue.epic_id == epic.id]
            return self._paginate(request, issues, self._issue_json)

        return self._handle(request, action)

    def assign_epic_issue(self, request: Request, group_id: str, epic_iid: int, issue_id: int) -> Response:
        def action(_current: User) -> Response:
            epic = self._epic(group_id, epic_iid)
            issue = self.backend.issues.get(issue_id)
            if issue is None:
                raise GitLabError(404, "404 Not found")
            issue.epic_id = epic.id
            return json_response({"id": issue.id, "epic": self._epic_json(epic), "issue": self._issue_json(issue)}, 201)

        return self._handle(request, action)

    # --- handlers: repository ------------------------------------------------------------------------------
    def raw_file(self, request: Request, project_id: str, file_path: str) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            commit, content = self.backend.read_file(project, file_path, request.args.get("ref"))
            headers = {
                "X-Gitlab-Blob-Id": blob_sha(content),
                "X-Gitlab-Commit-Id": commit.id,
                "X-Gitlab-Ref": request.args.get("ref") or project.default_branch,
            }
            return Response(content, headers=headers, mimetype="text/plain")

        return self._handle(request, action)

    def file(self, request: Request, project_id: str, file_path: str) -> Response:
        def action(_current: User) -> Response:
            from urllib.parse import unquote

            project = self.backend.project(project_id)
            ref = request.args.get("ref")
            if not ref:
                raise GitLabError(400, {"error": "ref is missing"})
            path = unquote(file_path)
            commit, content = self.backend.read_file(project, path, ref)
            last = self.backend.last_commit_touching(project, path, commit)
            return json_response(
                {
                    "file_name": path.rsplit("/", 1)[-1],
                    "file_path": path,
                    "size": len(content),
                    "encoding": "base64",
                    "content": base64.b64encode(content).decode(),
                    "content_sha256": hashlib.sha256(content).hexdigest(),
                    "ref": ref,
                    "blob_id": blob_sha(content),
                    "commit_id": commit.id,
                    "last_commit_id": last.id,
                    "execute_filemode": False,
                }
            )

        return self._handle(request, action)

    def commits(self, request: Request, project_id: str) -> Response:
        def action(current: User) -> Response:
            project = self.backend.project(project_id)
            if request.method == "POST":
                params = self._params(request)
                changes: dict[str, bytes | None] = {}
                for change in params.get("actions") or []:
                    kind = change.get("action")
                    path = change.get("file_path")
                    if kind not in ("create", "update", "delete") or not path:
                        raise GitLabError(400, {"error": "actions is invalid"})
                    content = change.get("content") or ""
                    data = base64.b64decode(content) if change.get("encoding") == "base64" else content.encode()
                    changes[path] = None if kind == "delete" else data
                if not params.get("branch") or not params.get("commit_message"):
                    raise GitLabError(
                        400, {"error": "branch is missing" if not params.get("branch") else "commit_message is missing"}
                    )
                commit = self.backend.commit_files(
                    project, params["branch"], params["commit_message"], current, changes, params.get("start_branch")
                )
                return json_response(self._commit_json(project, commit), 201)
            ref = request.args.get("ref_name")
            head = self.backend.resolve_ref(project, ref)
            history = [head]
            while history[-1].parent_ids:
                history.append(self.backend.commits[project.id][history[-1].parent_ids[0]])
            return self._paginate(request, history, lambda commit: self._commit_json(project, commit))

        return self._handle(request, action)

    def _commit_json(self, project: Project, commit: Any) -> dict[str, Any]:
        author = self.backend.users[commit.author_id]
        return {
            "id": commit.id,
            "short_id": commit.id[:8],
            "title": commit.message.split("\n")[0],
            "message": commit.message,
            "parent_ids": list(commit.parent_ids),
            "author_name": author.name,
            "author_email": author.email,
            "created_at": iso(commit.created_at),
            "committed_date": iso(commit.created_at),
            "web_url": f"{self.backend.web_url(project)}/-/commit/{commit.id}",
        }

    def branches(self, request: Request, project_id: str) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            items = sorted(self.backend.branches[project.id].items())
            return self._paginate(
                request,
                items,
                lambda item: {
                    "name": item[0],
                    "default": item[0] == project.default_branch,
                    "commit": self._commit_json(project, self.backend.commits[project.id][item[1]]),
                    "web_url": f"{self.backend.web_url(project)}/-/tree/{quote(item[0])}",
                },
            )

        return self._handle(request, action)

    # --- handlers: branches, compare, merge requests (issue #19) ------------------------------------------
    def _branch_json(self, project: Project, name: str, sha: str) -> dict[str, Any]:
        return {
            "name": name,
            "merged": False,
            "protected": name == project.default_branch,
            "default": name == project.default_branch,
            "developers_can_push": False,
            "developers_can_merge": False,
            "can_push": True,
            "commit": self._commit_json(project, self.backend.commits[project.id][sha]),
            "web_url": f"{self.backend.web_url(project)}/-/tree/{quote(name)}",
        }

    def create_branch(self, request: Request, project_id: str) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            params = self._params(request)
            name = str(params.get("branch") or "")
            sha = self.backend.create_branch(project, name, str(params.get("ref") or ""))
            return json_response(self._branch_json(project, name, sha), 201)

        return self._handle(request, action)

    def branch(self, request: Request, project_id: str, branch: str) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            name = unquote(branch)
            if request.method == "DELETE":
                self.backend.delete_branch(project, name)
                return Response(status=204)
            return json_response(self._branch_json(project, name, self.backend.branch_head(project, name).id))

        return self._handle(request, action)

    def compare(self, request: Request, project_id: str) -> Response:
        def action(_current: User) -> Response:
            import difflib

            project = self.backend.project(project_id)
            source, target = request.args.get("from"), request.args.get("to")
            if not source or not target:
                raise GitLabError(400, {"error": "from is missing" if not source else "to is missing"})
            straight = str(request.args.get("straight", "false")).lower() == "true"
            found = self.backend.compare(project, source, target, straight)
            start, head = found["start"], found["head"]
            diffs = []
            for path in sorted(set(start.files) | set(head.files)):
                before, after = start.files.get(path), head.files.get(path)
                if before == after:
                    continue
                lines = difflib.unified_diff(
                    (before or b"").decode("utf-8", "replace").splitlines(True),
                    (after or b"").decode("utf-8", "replace").splitlines(True),
                    n=3,
                )
                diffs.append(
                    {
                        "old_path": path,
                        "new_path": path,
                        "a_mode": "100644" if before is not None else "0",
                        "b_mode": "100644" if after is not None else "0",
                        "diff": "".join(list(lines)[2:]),  # GitLab's diff starts at the first @@ hunk
                        "new_file": before is None,
                        "renamed_file": False,
                        "deleted_file": after is None,
                    }
                )
            commits = found["commits"]
            return json_response(
                {
                    "commit": self._commit_json(project, commits[-1]) if commits else None,
                    "commits": [self._commit_json(project, commit) for commit in commits],
                    "diffs": diffs,
                    "compare_timeout": False,
                    "compare_same_ref": found["same"],
                    "web_url": f"{self.backend.web_url(project)}/-/compare/{start.id[:8]}...{head.id[:8]}",
                }
            )

        return self._handle(request, action)

    def _merge_request_json(self, request: MergeRequest) -> dict[str, Any]:
        backend = self.backend
        project = backend.projects[request.project_id]
        head = backend.branches[project.id].get(request.source_branch)
        return {
            "id": request.id,
            "iid": request.iid,
            "project_id": project.id,
            "title": request.title,
            "description": request.description,
            "state": request.state,
            "created_at": iso(request.created_at),
            "updated_at": iso(request.updated_at),
            "merged_at": iso(request.merged_at),
            "closed_at": iso(request.closed_at),
            "target_branch": request.target_branch,
            "source_branch": request.source_branch,
            "source_project_id": project.id,
            "target_project_id": project.id,
            "author": self._user_json(backend.users[request.author_id]),
            "assignees": [],
            "reviewers": [],
            "labels": list(request.labels),
            "draft": False,
            "work_in_progress": False,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable" if request.state == "opened" else "not_open",
            "has_conflicts": False,
            "sha": head,
            "merge_commit_sha": request.merge_commit_sha,
            "user_notes_count": len(request.notes),
            "should_remove_source_branch": None,
            "force_remove_source_branch": False,
            "references": {
                "short": f"!{request.iid}",
                "relative": f"!{request.iid}",
                "full": f"{project.path_with_namespace}!{request.iid}",
            },
            "web_url": f"{backend.web_url(project)}/-/merge_requests/{request.iid}",
        }

    def _mr_note_json(self, merge_request: MergeRequest, note: Any) -> dict[str, Any]:
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "author": self._user_json(self.backend.users[note.author_id]),
            "created_at": iso(note.created_at),
            "updated_at": iso(note.created_at),
            "system": False,
            "noteable_id": merge_request.id,
            "noteable_type": "MergeRequest",
            "noteable_iid": merge_request.iid,
            "project_id": merge_request.project_id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }

    def merge_requests(self, request: Request, project_id: str) -> Response:
        def action(current: User) -> Response:
            project = self.backend.project(project_id)
            if request.method == "POST":
                created = self.backend.create_merge_request(project, current, self._params(request))
                return json_response(self._merge_request_json(created), 201)
            args = request.args
            state = args.get("state", "all")
            if state not in ("opened", "closed", "locked", "merged", "all"):
                raise GitLabError(400, {"error": "state does not have a valid value"})
            wanted_labels = set(_split(args.get("labels")))
            found = [
                mr
                for mr in self.backend.merge_requests.values()
                if mr.project_id == project.id
                and state in ("all", mr.state)
                and args.get("source_branch") in (None, mr.source_branch)
                and args.get("target_branch") in (None, mr.target_branch)
                and wanted_labels <= set(mr.labels)
            ]
            order = args.get("order_by", "created_at")
            if order not in ("created_at", "updated_at", "title"):
                raise GitLabError(400, {"error": "order_by does not have a valid value"})
            found.sort(key=lambda mr: (getattr(mr, order), mr.id), reverse=args.get("sort", "desc") != "asc")
            return self._paginate(request, found, self._merge_request_json)

        return self._handle(request, action)

    def merge_request(self, request: Request, project_id: str, mr_iid: int) -> Response:
        def action(_current: User) -> Response:
            project = self.backend.project(project_id)
            if request.method == "PUT":
                updated = self.backend.update_merge_request(project, mr_iid, self._params(request))
                return json_response(self._merge_request_json(updated))
            return json_response(self._merge_request_json(self.backend.merge_request(project, mr_iid)))

        return self._handle(request, action)

    def merge_merge_request(self, request: Request, project_id: str, mr_iid: int) -> Response:
        def action(current: User) -> Response:
            merged = self.backend.merge(self.backend.project(project_id), mr_iid, current)
            return json_response(self._merge_request_json(merged))

        return self._handle(request, action)

    def mr_notes(self, request: Request, project_id: str, mr_iid: int) -> Response:
        def action(current: User) -> Response:
            project = self.backend.project(project_id)
            merge_request = self.backend.merge_request(project, mr_iid)
            if request.method == "POST":
                body = str(self._params(request).get("body") or "")
                note = self.backend.add_merge_request_note(project, mr_iid, current, body)
                return json_response(self._mr_note_json(merge_request, note), 201)
            notes = sorted(
                merge_request.notes,
                key=lambda note: (note.created_at, note.id),
                reverse=request.args.get("sort", "desc") != "asc",
            )
            return self._paginate(request, notes, lambda note: self._mr_note_json(merge_request, note))

        return self._handle(request, action)


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]
