"""JSON responses rendered with orjson (fast, and NumPy scalars serialise)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse as _StarletteJSON
from fastapi.routing import APIRoute


class JSONResponse(_StarletteJSON):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def operation_id(route: APIRoute) -> str:
    """A stable OpenAPI operation id: the route's tag and name."""
    tag = str(route.tags[0]).replace(" ", "_") if route.tags else "genofed"
    return f"{tag}_{route.name}"
