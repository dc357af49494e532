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
    ├── HubRequestError        (command line) the hub refused or could not be reached
    └── SecureSumError         a step of a secure sum was refused (replay, unpinned peer...)

Each error carries an HTTP status and a stable ``code``; every error response of the
node's and the hub's APIs carries that code, so clients and the command line can act on
it without parsing the message. The codes are listed in docs/errors.md.
"""

from __future__ import annotations


class GenofedError(Exception):
    """Something failed that genofed did not expect; the operator finds it in the logs.

    The base class of every error: ``str(err)`` says what failed and what to do."""

    status: int = 500
    code: str = "internal_error"
    title: str | None = None


class IngestError(GenofedError):
    """A file could not be ingested and the node is unchanged; ``source`` names the file,
    ``where`` the record or line."""

    status = 400
    code = "ingest_error"

    def __init__(self, message: str, *, source: str | None = None, where: str | None = None):
        self.message = message
        self.source = source
        self.where = where
        parts = [p for p in (source, where) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def __reduce__(self) -> tuple:
        # keyword arguments do not survive Exception's pickling; a parallel ingest's
        # worker sends its error to the process that reports it
        return (_ingest_error, (self.message, self.source, self.where))


def _ingest_error(message: str, source: str | None, where: str | None) -> IngestError:
    return IngestError(message, source=source, where=where)


class ConfigError(GenofedError):
    """node.yaml, hub.yaml or the node directory is missing or invalid; the message names
    the file and the setting."""

    status = 500
    code = "config_error"


class NotFoundError(GenofedError):
    """What was asked for does not exist, or is not open to this caller (the same answer
    for both, so that nothing is learnt of what one may not see)."""

    status = 404
    code = "not_found"


class QueryError(GenofedError):
    """The request is malformed or asks for something not supported; the message says
    what to change."""

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
    """Credentials were presented and refused (messages never echo token contents)."""

    status = 401
    code = "invalid_credentials"


class UntrustedKeyError(CredentialError):
    """No usable key for a token: the message says why, never which keys the node holds."""

    code = "untrusted_key"


class VisaConditionError(CredentialError):
    """A visa's ``conditions`` claim is malformed: the visa is ignored."""

    code = "invalid_visa_conditions"


class AccessDeniedError(GenofedError):
    """The caller may not have what they asked for (their Passport does not open it)."""

    status = 403
    code = "forbidden"


class BudgetExhaustedError(GenofedError):
    """The caller has used up today's query budget; ``Retry-After`` says when it renews."""

    status = 429
    code = "budget_exhausted"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DacError(GenofedError):
    """A Data Access Committee action is not allowed in the application's state."""

    status = 409
    code = "dac_error"


class QueryFailedError(GenofedError):
    """A query the checks accepted failed while running (bad SQL for the engine, a timeout:
    ``query_timeout``); ``status`` says whose fault."""

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


class SecureSumError(GenofedError):
    """A node or the hub refused a step of a secure sum (a replayed round, an unpinned
    participant, too few participants, a value too large for the encoding); nothing was
    summed, and the message says which rule failed."""

    status = 409
    code = "secure_sum_refused"
