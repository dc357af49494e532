"""The shape of the package: which layer may import which, the public API, the exception
tree, and the one error shape of every API."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import genofed
from genofed import _exceptions
from genofed.node.app import create_app

SRC = Path(genofed.__file__).parent
# The core: no HTTP server of ours, so it can be used and tested without one.
CORE = ("store", "governance", "beacon", "dataconnect", "analysis", "jobs", "api", "wes")
SERVERS = ("genofed.node", "genofed.hub")
# Development tools: the only modules allowed to import the development broker.
DEV_TOOLS = {"genofed.demo", "genofed.cli_governance", "genofed.devbroker"}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_core_never_imports_the_servers() -> None:
    offending = {}
    for name, path in modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in CORE:
            bad = sorted(i for i in imports(path) if i.startswith(SERVERS))
            if bad:
                offending[name] = bad
    assert offending == {}


def test_production_code_never_imports_the_development_broker() -> None:
    offending = {
        name: "genofed.devbroker"
        for name, path in modules().items()
        if name not in DEV_TOOLS and any(i.startswith("genofed.devbroker") for i in imports(path))
    }
    assert offending == {}


def test_the_import_walk_sees_imports() -> None:
    """The walk above would pass vacuously if it saw nothing: it must see real imports."""
    service = modules()["genofed.beacon.service"]
    assert "genofed.governance.release" in imports(service)
    assert "genofed.node.deps" in imports(modules()["genofed.node.beacon_routes"])


def test_the_public_api_is_declared_sorted_and_importable() -> None:
    assert genofed.__all__ == sorted(genofed.__all__)
    for name in genofed.__all__:
        assert getattr(genofed, name) is not None
    with pytest.raises(AttributeError):
        genofed.not_a_thing  # noqa: B018


def test_every_error_is_in_the_tree_and_exported() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(_exceptions, inspect.isclass)
        if issubclass(c, Exception) and c.__module__ == _exceptions.__name__
    ]
    assert all(issubclass(c, genofed.GenofedError) for c in classes)
    assert {c.__name__ for c in classes} <= set(genofed.__all__)
    codes = [c.code for c in classes]
    assert len(set(codes)) == len(codes)  # each its own stable code
    for name in _exceptions.__doc__.split("GenofedError", 1)[1].split():
        if name.endswith("Error"):
            assert hasattr(_exceptions, name), name  # the drawn tree names real classes


def test_no_module_outside_the_tree_defines_an_exception() -> None:
    defined = {}
    for name, path in modules().items():
        if name == "genofed._exceptions":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if bases & {"Exception", "ValueError", "LookupError", "RuntimeError"}:
                    defined[f"{name}.{node.name}"] = sorted(bases)
    assert defined == {}


# -- one error shape per API, with its code --------------------------------------------


@pytest.fixture(scope="module")
def node_client(small_node) -> TestClient:
    with TestClient(create_app(small_node.root)) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/beacon/v2/g_variants?nonsense=1", None, 400, "bad_request"),
        ("GET", "/beacon/v2/nowhere", None, 404, "not_found"),
        ("DELETE", "/beacon/v2/individuals", None, 405, "method_not_allowed"),
        ("POST", "/dac/applications", {"dataset_id": "small"}, 401, "invalid_credentials"),
    ],
)
def test_beacon_paths_answer_errors_in_the_beacon_shape(
    node_client, method, path, body, status, code
) -> None:
    response = node_client.request(method, path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["errorCode"] == status and error["code"] == code
    assert error["errorMessage"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/data-connect/search", {"query": "DROP TABLE x"}, 400, "bad_request"),
        ("POST", "/data-connect/search", {"nope": 1}, 400, "bad_request"),
        ("GET", "/data-connect/table/nothing/info", None, 404, "not_found"),
        ("GET", "/data-connect/nowhere", None, 404, "not_found"),
        ("DELETE", "/data-connect/tables", None, 405, "method_not_allowed"),
        ("GET", "/data-connect/search/nojob/0", None, 404, "not_found"),
    ],
)
def test_data_connect_paths_answer_errors_in_the_data_connect_shape(
    node_client, method, path, body, status, code
) -> None:
    response = node_client.request(method, path, json=body)
    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["code"] == code and error["title"] and error["detail"]


def test_an_audit_failure_answers_in_the_shape_of_the_api(tmp_path: Path) -> None:
    from tests.conftest import make_node

    node = make_node(tmp_path / "node")
    with TestClient(create_app(node.root)) as client:
        audit = node.audit_path
        audit.unlink(missing_ok=True)
        audit.mkdir()  # the log cannot be appended to
        dc = client.get("/data-connect/tables")
        assert dc.status_code == 503
        assert dc.json()["errors"][0]["code"] == "audit_unavailable"
        beacon = client.get("/beacon/v2/individuals")
        assert beacon.status_code == 503
        assert beacon.json()["error"]["code"] == "audit_unavailable"
