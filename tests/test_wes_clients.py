"""WES against a live node (``genofed node serve`` on 127.0.0.1) with real clients:
wes-client (PyPI ``wes-service``) submits a CWL workflow and follows it to COMPLETE,
every response is checked against the official WES 1.1 schemas, and schemathesis runs
over the official OpenAPI document (both copied unchanged into tests/data/specs)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import requests
import yaml
from wes_client.util import WESClient

from genofed.config import load_config
from genofed.wes import engines
from tests import wes_workflows as wf
from tests.governance import build_governed_node
from tests.live_server import start_node_server
from tests.test_cli_input import run

pytestmark = pytest.mark.servers  # real processes on 127.0.0.1

SPECS = Path(__file__).parent / "data" / "specs"
SPEC = SPECS / "wes" / "workflow_execution_service.openapi.yaml"
SERVICE_INFO = SPECS / "service-info" / "service-info.yaml"
REMOTE_SERVICE = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/"
    "service-info.yaml#/components/schemas/Service"
)
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    wf.need_bwrap()
    root = tmp_path_factory.mktemp("wes-live")
    gov = build_governed_node(root)
    workflow = root / "counts.cwl"
    workflow.write_text(wf.ALLELE_COUNTS)
    run("node", "workflow", "approve", str(gov.node.root), str(workflow))
    server, base = start_node_server(gov.node.root, stdout=subprocess.DEVNULL)
    try:
        token = gov.passport("researcher-1", grants=("ctrl",))
        yield {"base": base, "token": token, "workflow": workflow, "root": root, "gov": gov}
    finally:
        server.terminate()
        server.wait(timeout=15)


def _local_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    spec["components"]["schemas"].update(
        yaml.safe_load(SERVICE_INFO.read_text())["components"]["schemas"]
    )

    def local(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("$ref") == REMOTE_SERVICE:
                return {"$ref": "#/components/schemas/Service"}
            return {k: local(v) for k, v in node.items()}
        if isinstance(node, list):
            return [local(v) for v in node]
        return node

    return local(spec)


def _check(name: str, body: Any) -> None:
    schemas = _local_spec()["components"]["schemas"]
    jsonschema.validate(body, {**schemas[name], "components": {"schemas": schemas}})


# wes-client's get_version opens the workflow file and never closes it
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_wes_client_runs_a_cwl_workflow_to_complete(live, monkeypatch, tmp_path) -> None:
    """wes-client's own ``run`` submits a CWL workflow with an attached input file, and
    its ``get_run_status``, ``get_run_log`` and ``list_runs`` follow it. ``run`` posts
    without the auth header the client was given (that line is commented out in
    wes-client 5.0), so its ``requests.post`` is given the header here, and nothing else."""
    host = live["base"].removeprefix("http://")
    auth = {"Authorization": f"Bearer {live['token']}"}
    client = WESClient({"auth": auth, "proto": "http", "host": host})
    info = client.get_service_info()
    assert set(info["workflow_engine_versions"]) == {e.name for e in engines.present()}
    workflow, table, params = tmp_path / "lines.cwl", tmp_path / "table.txt", tmp_path / "in.json"
    workflow.write_text(wf.COUNT_LINES)
    assert run("node", "workflow", "approve", str(live["gov"].node.root),
               str(workflow)).returncode == 0  # fmt: skip
    table.write_text("a\nb\nc\n")
    params.write_text(json.dumps({"table": {"class": "File", "path": "table.txt"}}))
    post = requests.post
    monkeypatch.setattr(requests, "post", lambda url, **kw: post(url, headers=auth, **kw))
    run_id = client.run(str(workflow), f"file://{params}", [str(table)])["run_id"]
    end, finished = time.monotonic() + 120, ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR")
    while client.get_run_status(run_id)["state"] not in finished and time.monotonic() < end:
        time.sleep(0.2)
    log = client.get_run_log(run_id)
    assert log["state"] == "COMPLETE", log
    assert log["request"]["workflow_type"] == "CWL"
    assert log["request"]["workflow_url"] == "lines.cwl"
    assert log["outputs"] == {} and log["airlock"]["held"] == 4  # lines.txt and 3 logs
    assert run_id in [r["run_id"] for r in client.list_runs()["runs"]]
    folder = live["gov"].node.state_dir / "wes" / "runs" / run_id / "airlock" / "files"
    assert (folder / "lines.txt").read_text().split() == ["3"]


def test_responses_match_the_official_schemas(live) -> None:
    headers = {"Authorization": f"Bearer {live['token']}"}
    with httpx.Client(base_url=f"{live['base']}/ga4gh/wes/v1", headers=headers) as http:
        info = http.get("/service-info").json()
        _check("ServiceInfo", info)
        assert info["type"] == {"group": "org.ga4gh", "artifact": "wes", "version": "1.1.0"}
        offered = {e.name: [e.version] for e in engines.present()}
        assert {k: v["workflow_engine_version"] for k, v in
                info["workflow_engine_versions"].items()} == offered  # fmt: skip
        files = {"workflow_attachment": ("counts.cwl", live["workflow"].read_bytes())}
        data = {"workflow_type": "CWL", "workflow_type_version": "v1.2",
                "workflow_url": "counts.cwl", "tags": json.dumps({"datasets": "ctrl"})}  # fmt: skip
        posted = http.post("/runs", data=data, files=files)
        _check("RunId", posted.json())
        run_id = posted.json()["run_id"]
        _check("RunStatus", http.get(f"/runs/{run_id}/status").json())
        end = time.monotonic() + 120
        while http.get(f"/runs/{run_id}/status").json()["state"] != "COMPLETE":
            assert time.monotonic() < end
            time.sleep(0.2)
        _check("RunLog", http.get(f"/runs/{run_id}").json())
        _check("RunListResponse", http.get("/runs", params={"page_size": 1}).json())
        _check("TaskListResponse", http.get(f"/runs/{run_id}/tasks").json())
        _check("TaskLog", http.get(f"/runs/{run_id}/tasks/engine").json())
        _check("RunId", http.post(f"/runs/{run_id}/cancel").json())
        missing = http.get("/runs/run-00000000000000000000")
        assert missing.status_code == 404
        _check("ErrorResponse", missing.json())
        refused = http.post("/runs", data={**data, "workflow_url": "x.cwl"}, files=files)
        assert refused.status_code == 400 and refused.json()["status_code"] == 400
        _check("ErrorResponse", refused.json())


def test_schemathesis_finds_no_server_errors_or_schema_violations(live, tmp_path) -> None:
    spec_file = tmp_path / "wes.yaml"
    spec_file.write_text(yaml.safe_dump(_local_spec()))
    result = subprocess.run(
        [SCHEMATHESIS, "run", str(spec_file), "--url", f"{live['base']}/ga4gh/wes/v1",
         "--header", f"Authorization: Bearer {live['token']}",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         "--max-examples", "30", "--seed", "1", "--workers", "1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Tested: 8" in result.stdout  # all eight operations of WES 1.1
    # nothing it sent started a run: every workflow here must be approved
    runs = live["gov"].node.state_dir / "wes" / "runs"
    config = load_config(live["gov"].node.config_path)
    for folder in runs.iterdir() if runs.is_dir() else []:
        record = json.loads((folder / "run.json").read_text())
        assert record["digest"] in config.workflows.approved
