"""Every error genofed raises on purpose.

    GenofedError
    ├── IngestError            a file could not be ingested; the node is unchanged
    ├── ConfigError            node.yaml, hub.yaml or the node directory is missing or invalid
    ├── NotFoundError          an entry, dataset, table, job or page does not exist (for you)
    ├── QueryError             a request is malformed or asks for something unsupported
    │   └── NodeRefusedError   (hub) a node refused the request it was sent
    ├── CredentialError        credentials were presented and refused (401)
    │   ├── UntrustedKeyError  a token is not signed by a key this node trusts
    │   └── VisaConditionError a visa's conditions are malformed
    ├── AccessDeniedError      the caller may not see what they asked for (403)
    ├── BudgetExhaustedError   the caller used up their query budget (429)
    ├── DacError               a Data Access Committee action is not allowed
    ├── QueryFailedError       a query failed while running (bad SQL, timeout)
    ├── NodeCredentialsError   (hub) no Passport could be obtained for a node
    └── HubRequestError        (command line) the hub refused or could not be reached

Each error carries an HTTP status and a stable ``code``; every error response of the
node's and the hub's APIs carries that code, so clients and the command line can act on
it without parsing the message. The codes are listed in docs/errors.md.
"""

from __future__ import annotations


class GenofedError(Exception):
    """Base class: ``str(err)`` says what failed and what to do."""

    status: int = 500
    code: str = "internal_error"
    title: str | None = None


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


class ConfigError(GenofedError):
    status = 500
    code = "config_error"


class NotFoundError(GenofedError):
    status = 404
    code = "not_found"


class QueryError(GenofedError):
    status = 400
    code = "bad_request"


class NodeRefusedError(QueryError):
    """A node refused what the hub asked of it; the caller gets its status and message."""

    code = "node_refused"

    def __init__(self, node: str, status: int, detail: str):
        super().__init__(f"node {node}: {detail}")
        self.node = node
        self.status = status


class CredentialError(GenofedError):
    """Messages never echo token contents."""

    status = 401
    code = "invalid_credentials"


class UntrustedKeyError(CredentialError):
    """No usable key for a token: the message says why, never which keys the node holds."""

    code = "untrusted_key"


class VisaConditionError(CredentialError):
    code = "invalid_visa_conditions"


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
        if status == 408:
            self.code = "query_timeout"


class NodeCredentialsError(GenofedError):
    """The hub could not obtain credentials for one node (the broker refused, timed out or
    could not be reached); ``outcome`` is that node's status in the fan-out."""

    status = 502
    code = "node_credentials"

    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome


class HubRequestError(GenofedError):
    """The command line's request to a hub failed; the message says why."""

    status = 502
    code = "hub_request_failed"
