"""One way for the node's and the hub's apps to turn errors into answers.

Each API keeps its own error shape: Data Connect's ``ErrorResponse``
(``{"errors": [{"title", "detail", "code"}]}``) on every ``/data-connect`` path, WES's
(``{"msg", "status_code"}``, with the ``code``) on ``/ga4gh/wes`` and ``/airlock``, the
Beacon's ``beaconErrorResponse`` (``{"meta", "error": {"errorCode", "errorMessage",
"code"}}``) everywhere else. Every error carries its stable ``code`` (docs/errors.md).
``error_body`` is the only place either shape is written, for the error handlers and for
the audit middleware alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed._exceptions import BudgetExhaustedError, CredentialError, GenofedError
from genofed.api.responses import JSONResponse

log = logging.getLogger("genofed")

DATA_CONNECT_PREFIX = "/data-connect"
WES_PREFIXES = ("/ga4gh/wes/", "/airlock/")
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Query timed out",
    409: "Conflict",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
}
# The codes of errors that are not GenofedErrors (the framework's own, and the audit's).
HTTP_CODES = {
    400: "bad_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "bad_request",
    429: "budget_exhausted",
    500: "internal_error",
    503: "unavailable",
}
AUDIT_UNAVAILABLE = "audit_unavailable"


@dataclass(frozen=True)
class ApiError:
    status: int
    message: str
    code: str
    title: str | None = None


# The Beacon ``meta`` of an error answer, given the request (each app has its own).
BeaconMeta = Callable[[str], dict[str, Any]]


# APIs whose errors are a list of {title, detail, code} (Data Connect's shape); the others
# answer in the Beacon's.
_ERRORS_LIST_PREFIXES = (DATA_CONNECT_PREFIX + "/", "/analysis/", "/hub/analyses", "/hub/workflows")


def error_body(path: str, error: ApiError, beacon_meta: BeaconMeta) -> dict[str, Any]:
    """The error in the shape of the API that ``path`` belongs to."""
    if path.startswith(WES_PREFIXES):
        return {"msg": error.message, "status_code": error.status, "code": error.code}
    if path.startswith(_ERRORS_LIST_PREFIXES) or path == DATA_CONNECT_PREFIX:
        title = error.title or TITLES.get(error.status, "Error")
        return {"errors": [{"title": title, "detail": error.message, "code": error.code}]}
    return {
        "meta": beacon_meta(path),
        "error": {"errorCode": error.status, "errorMessage": error.message, "code": error.code},
    }


def _no_such_path(path: str) -> str:
    """A 404 for a path no route has, saying where the real ones are listed."""
    shown = path if len(path) <= 120 else path[:120] + "…"
    if path.startswith("/beacon/v2/"):
        entry = path.removeprefix("/beacon/v2/").split("/")[0][:60]
        return (
            f"{entry!r} is not an entry type or endpoint of this Beacon; its entry types are "
            "listed at /beacon/v2/entry_types and every endpoint at /beacon/v2/map"
        )
    return f"no endpoint {shown}; the API is described at /openapi.json"


def install_error_handlers(app: FastAPI, beacon_meta: BeaconMeta, operator: str) -> None:
    """Answer every error readably; ``operator`` names who can read the logs."""

    def respond(request: Request, error: ApiError) -> JSONResponse:
        body = error_body(request.url.path, error, beacon_meta)
        return JSONResponse(body, status_code=error.status)

    @app.exception_handler(GenofedError)
    async def genofed_error(request: Request, exc: GenofedError) -> JSONResponse:
        response = respond(request, ApiError(exc.status, str(exc), exc.code, exc.title))
        if isinstance(exc, CredentialError):
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        if isinstance(exc, BudgetExhaustedError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return respond(request, ApiError(400, f"{where}: {first.get('msg')}", "bad_request"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = _no_such_path(request.url.path)
        response = respond(request, ApiError(exc.status_code, message, code))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        message = f"internal error; the {operator} operator can find it in the logs"
        return respond(request, ApiError(500, message, "internal_error"))
