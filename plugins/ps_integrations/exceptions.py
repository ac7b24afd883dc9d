"""Error hierarchy: one root, one subclass per external system carrying the remote code."""

from __future__ import annotations


class IntegrationError(Exception):
    """Root of every error raised by ps-integrations code."""


class ConfigurationError(IntegrationError):
    """A connection, variable or configuration file is missing or invalid."""


class StateStoreError(IntegrationError):
    """The state database could not be reached or its schema applied."""


class ExportError(IntegrationError):
    """An export could not be written to the exports store."""


class SalesforceApiError(IntegrationError):
    def __init__(self, code: str, message: str):
        super().__init__(f"Salesforce {code}: {message}")
        self.code = code
        self.message = message


class GitLabApiError(IntegrationError):
    """A GitLab call that failed: HTTP ``status`` (0: no answer), the ``endpoint`` called, GitLab's message."""

    def __init__(self, status: int, endpoint: str, message: str):
        super().__init__(
            f"GitLab HTTP {status} {endpoint}: {message}" if endpoint else f"GitLab HTTP {status}: {message}"
        )
        self.status = status
        self.endpoint = endpoint
        self.message = message


class GitLabNotFoundError(GitLabApiError):
    """404: the project, issue, file or user does not exist (or the token may not see it)."""


class ZuoraFault(IntegrationError):
    def __init__(self, code: str, message: str):
        super().__init__(f"Zuora {code}: {message}")
        self.code = code
        self.message = message


class RecordsFailedError(IntegrationError):
    """Raised at the end of a run when some records were skipped; the good ones already went through."""

    def __init__(self, summary_line: str, failures: list[str]):
        listed = "\n".join(f"  - {failure}" for failure in failures)
        super().__init__(f"{len(failures)} record(s) failed ({summary_line}):\n{listed}")
        self.failures = failures
