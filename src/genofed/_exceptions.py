"""Every error genofed raises on purpose.

    GenofedError
    ├── IngestError          a file could not be ingested; the node is unchanged
    ├── NodeConfigError      node.yaml or the node directory is missing or invalid
    ├── NotFoundError        an entry, dataset or table the caller asked for does not exist
    ├── QueryError           a request is malformed or asks for something unsupported
    ├── CredentialError      credentials were presented and refused (401)
    ├── AccessDeniedError    the caller may not see what they asked for (403)
    ├── BudgetExhaustedError the caller used up their query budget (429)
    ├── DacError             a Data Access Committee action is not allowed
    └── QueryFailedError     a Data Connect query failed while running (bad SQL, timeout)

Each error carries an HTTP status and a stable ``code`` so the API and the CLI can
translate it at the edge without parsing the message.
"""

from __future__ import annotations


class GenofedError(Exception):
    """Base class: ``str(err)`` says what failed and what to do."""

    status: int = 500
    code: str = "genofed_error"


class IngestError(GenofedError):
    """Input data could not be ingested. ``source`` names the file, ``where`` the record/line."""

    status = 400
    code = "ingest_error"

    def __init__(self, message: str, *, source: str | None = None, where: str | None = None):
        self.source = source
        self.where = where
        parts = [p for p in (source, where) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class NodeConfigError(GenofedError):
    status = 500
    code = "node_config_error"


class NotFoundError(GenofedError):
    status = 404
    code = "not_found"


class QueryError(GenofedError):
    status = 400
    code = "bad_request"


class CredentialError(GenofedError):
    """Messages never echo token contents."""

    status = 401
    code = "invalid_credentials"


class AccessDeniedError(GenofedError):
    status = 403
    code = "forbidden"


class BudgetExhaustedError(GenofedError):
    status = 429
    code = "budget_exhausted"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DacError(GenofedError):
    status = 409
    code = "dac_error"


class QueryFailedError(GenofedError):
    """A query the guard accepted failed in the engine; ``status`` says whose fault."""

    code = "query_failed"

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.title = title
