"""One way for the node's and the hub's apps to turn errors into answers.

Each API keeps its own error shape (the Beacon's ``beaconErrorResponse``, Data Connect's
``ErrorResponse``): the app gives ``render``, which picks the shape from the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed._exceptions import (
    BudgetExhaustedError,
    CredentialError,
    GenofedError,
    QueryFailedError,
)
from genofed.node.json_response import JSONResponse

log = logging.getLogger("genofed")

# render(request, status, message, title) -> the response in that API's shape
Render = Callable[[Request, int, str, str | None], JSONResponse]

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Query timed out",
    429: "Too many requests",
    500: "Internal error",
}


def install_error_handlers(app: FastAPI, render: Render, operator: str) -> None:
    """Answer every error readably; ``operator`` names who can read the logs."""

    @app.exception_handler(GenofedError)
    async def genofed_error(request: Request, exc: GenofedError) -> JSONResponse:
        title = exc.title if isinstance(exc, QueryFailedError) else None
        response = render(request, exc.status, str(exc), title)
        if isinstance(exc, CredentialError):
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        if isinstance(exc, BudgetExhaustedError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return render(request, 400, f"{where}: {first.get('msg')}", None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return render(request, exc.status_code, str(exc.detail), None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        message = f"internal error; the {operator} operator can find it in the logs"
        return render(request, 500, message, None)
