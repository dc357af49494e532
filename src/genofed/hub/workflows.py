"""``/hub/workflows``: one approved workflow run at every node (or some), each run followed
at its node, and the outputs the nodes' custodians released collected side by side.

The hub sends each node the same WES RunRequest (as the caller, through the broker's
token exchange, like every other question), with the node's own dataset: ``datasets``
names them as ``node:dataset``, and ``{dataset}`` in ``workflow_params`` becomes that
node's dataset id. What a run may do is each node's own policy: its approved workflows,
its sandbox, its airlock. The hub keeps only which run is whose, in
``<state_dir>/workflows/<id>.json``; states and outputs are asked of the nodes.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from genofed._exceptions import NotFoundError, QueryError
from genofed.config import HubNode
from genofed.hub.client import NodeClient
from genofed.jobs.runtime import write_atomically

WES = "/ga4gh/wes/v1"
FIELDS = ("workflow_type", "workflow_type_version", "workflow_url", "workflow_params", "tags",
          "workflow_engine", "workflow_engine_version", "workflow_engine_parameters")  # fmt: skip


@dataclass
class WorkflowRun:
    """One hub workflow: the runs it started, by node."""

    id: str
    owner: str
    workflow: str  # its workflow_url
    workflow_type: str
    created: float = field(default_factory=time.time)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> run_id or why not

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class WorkflowStore:
    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, run_id: str) -> Path:
        if not re.fullmatch(r"workflow-[0-9a-f]{16}", run_id):
            raise NotFoundError(f"no workflow {run_id!r}: ids are workflow- and 16 hex digits")
        return self.directory / f"{run_id}.json"

    def save(self, run: WorkflowRun) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self._path(run.id), json.dumps(run.as_json(), indent=1).encode())

    def get(self, run_id: str, owner: str) -> WorkflowRun:
        try:
            run = WorkflowRun(**json.loads(self._path(run_id).read_text()))
        except FileNotFoundError:
            run = None
        if run is None or run.owner != owner:
            raise NotFoundError(f"no workflow {run_id!r} of yours; GET /hub/workflows lists them")
        return run

    def all(self, owner: str) -> list[WorkflowRun]:
        if not self.directory.is_dir():
            return []
        runs = []
        for path in self.directory.glob("workflow-*.json"):
            try:
                run = WorkflowRun(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if run.owner == owner:
                runs.append(run)
        return sorted(runs, key=lambda r: r.created, reverse=True)


def _for_node(fields: dict[str, str], dataset: str | None) -> dict[str, str]:
    """The RunRequest's fields as one node gets them: its dataset in the tags and in
    ``{dataset}`` of the parameters."""
    mine = dict(fields)
    tags = json.loads(mine.get("tags") or "{}")
    if not isinstance(tags, dict):
        raise QueryError("tags must be a JSON object")
    if dataset is not None:
        tags["datasets"] = dataset
        params = json.loads(mine.get("workflow_params") or "{}")
        mine["workflow_params"] = json.dumps(_filled(params, dataset))
    mine["tags"] = json.dumps(tags)
    return mine


def _filled(value: Any, dataset: str) -> Any:
    if isinstance(value, str):
        return value.replace("{dataset}", dataset)
    if isinstance(value, dict):
        return {k: _filled(v, dataset) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, dataset) for v in value]
    return value


def encode(fields: dict[str, str], attachments: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart RunRequest, encoded (by httpx) to send to a node."""
    files = [("workflow_attachment", (name, content)) for name, content in attachments.items()]
    request = httpx.Request("POST", "http://node" + WES + "/runs", data=fields, files=files)
    return request.read(), request.headers["content-type"]


def targets(client: NodeClient, datasets: list[str], nodes: list[str]) -> dict[str, str | None]:
    """The nodes to run at (every node unless named), each with its dataset if given."""
    chosen: dict[str, str | None] = {}
    for entry in datasets:
        node, _, dataset = entry.partition(":")
        if not dataset:
            raise QueryError(f"{entry!r}: name a dataset as node:dataset")
        chosen[node] = dataset
    for node in nodes:
        chosen.setdefault(node, None)
    known = {n.name for n in client.nodes}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise QueryError(f"no node {', '.join(unknown)} in this federation; GET /hub/nodes")
    return chosen or dict.fromkeys(sorted(known))


async def start(
    client: NodeClient,
    run: WorkflowRun,
    fields: dict[str, str],
    attachments: dict[str, bytes],
    chosen: dict[str, str | None],
) -> None:
    """The same RunRequest sent to each chosen node at once; each node's run id, or why
    it refused (the node's own words)."""
    bodies = {name: encode(_for_node(fields, dataset), attachments)
              for name, dataset in chosen.items()}  # fmt: skip

    async def call(node: HubNode, end: float) -> Any:
        return await client.send(node, "POST", f"{WES}/runs", end, content=bodies[node.name])

    nodes = [client.node(name) for name in chosen]
    for node, reply in zip(nodes, await client.each(call, nodes=nodes), strict=True):
        document = reply.document or {}
        if reply.status == "ok" and isinstance(document.get("run_id"), str):
            run.runs[node.name] = {"run_id": document["run_id"], "dataset": chosen[node.name]}
        else:
            run.runs[node.name] = {"status": reply.status, "detail": reply.detail}


async def follow(client: NodeClient, run: WorkflowRun) -> dict[str, Any]:
    """Each node's run as its node has it now, side by side: state, times, the outputs its
    custodian released, and how many are held or rejected."""
    started = {n: r["run_id"] for n, r in run.runs.items() if "run_id" in r}

    async def call(node: HubNode, end: float) -> Any:
        return await client.send(node, "GET", f"{WES}/runs/{started[node.name]}", end)

    nodes = [client.node(name) for name in started if name in {n.name for n in client.nodes}]
    shown: dict[str, Any] = {n: dict(r) for n, r in run.runs.items()}
    for node, reply in zip(nodes, await client.each(call, nodes=nodes), strict=True):
        log = reply.document or {}
        if reply.status == "ok":
            engine = log.get("run_log") or {}
            shown[node.name].update(state=log.get("state"), outputs=log.get("outputs") or {},
                                    airlock=log.get("airlock") or {},
                                    start_time=engine.get("start_time"),
                                    end_time=engine.get("end_time"),
                                    system_logs=engine.get("system_logs") or [])  # fmt: skip
        else:
            shown[node.name].update(state="UNKNOWN", detail=reply.detail or reply.status)
    return {**run.as_json(), "nodes": shown}
