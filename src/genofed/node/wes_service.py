"""GA4GH WES 1.1 at a node: runs submitted, checked against the node's policy (approved
workflows, who may run them on which datasets), handed to a supervisor (``wes.supervise``),
and shown to their owners in the spec's shapes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator

from genofed import __version__
from genofed._exceptions import AccessDeniedError, ConfigError, QueryError
from genofed.beacon import framework
from genofed.governance.access import Caller, Standing
from genofed.wes import engines
from genofed.wes.airlock import Airlock, Output
from genofed.wes.runs import FINISHED, RunRecord, RunStore, State, _safe_name, owner_of
from genofed.wes.sandbox import BWRAP

if TYPE_CHECKING:
    from genofed.node.runtime import NodeRuntime

PREFIX = "/ga4gh/wes/v1"
# Every attachment must be approved like the workflow itself, but data: a file with one of
# these suffixes (an engine configuration, a profile, a module imported by the workflow,
# a .pyc, a .yml tool: anything else could be run as code).
DATA_SUFFIXES = (".tsv", ".csv", ".txt", ".bed", ".vcf", ".vcf.gz", ".tsv.gz", ".csv.gz")
PAGE_SIZE = 100


class RunRequest(BaseModel):
    """The WES RunRequest, from its multipart form (JSON fields as strings)."""

    workflow_type: str = Field(min_length=1, max_length=20)
    workflow_type_version: str = Field(min_length=1, max_length=20)
    workflow_url: str = Field(min_length=1, max_length=1000)
    workflow_params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    workflow_engine: str | None = Field(None, max_length=40)
    workflow_engine_version: str | None = Field(None, max_length=40)
    workflow_engine_parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("workflow_params", "tags", "workflow_engine_parameters", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f"not JSON: {exc}") from exc
        return value

    @property
    def datasets(self) -> list[str]:
        """The datasets the run asks to see (tag ``datasets``: ids, comma-separated)."""
        return sorted({d.strip() for d in self.tags.get("datasets", "").split(",") if d.strip()})


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class WesService:
    def __init__(self, runtime: NodeRuntime):
        self.runtime = runtime
        self.store = RunStore(runtime.node.state_dir)

    @property
    def airlock(self) -> Airlock:
        config = self.runtime.config.workflows
        return Airlock(self.store.runs, self.runtime.gate.audit, config.airlock)

    def service_info(self, base_url: str) -> dict[str, Any]:
        config = self.runtime.config
        offered = engines.present()
        counts = {s.value: 0 for s in State}
        for record in self.store.all():
            counts[record.state.value] += 1
        info = framework.service_info(config, base_url, artifact="wes", version="1.1.0",
                                      documentation="https://ga4gh.github.io/"
                                      "workflow-execution-service-schemas/")  # fmt: skip
        return {
            **info,
            "workflow_type_versions": {
                e.workflow_type: {"workflow_type_version": list(e.type_versions)} for e in offered
            },
            "supported_wes_versions": ["1.1.0"],
            "supported_filesystem_protocols": ["file"],
            "workflow_engine_versions": {
                e.name: {"workflow_engine_version": [e.version]} for e in offered
            },
            "default_workflow_engine_parameters": [],
            "system_state_counts": counts,
            "auth_instructions_url": config.organization.welcome_url or base_url,
            "tags": {
                "genofed": __version__,
                "approved_workflows": str(len(config.workflows.approved)),
                "datasets": "name the datasets a run may read in its tag 'datasets' "
                "(comma-separated); each is at /data/<id> in the run's sandbox, read-only",
                "outputs": "held in the node's airlock until a custodian releases them",
            },
        }

    # -- submitting ------------------------------------------------------------------

    def _may_run(self, caller: Caller, dataset_id: str) -> bool:
        reader = self.runtime.live().readers.get(dataset_id)
        if reader is None:
            return False
        entitlement = self.runtime.gate.access.entitlement(
            caller, reader.dataset_id, reader.tier, reader.granularity
        )
        if entitlement is None:
            return False
        if entitlement.standing == Standing.GRANTED:
            return True
        registered = entitlement.standing == Standing.REGISTERED
        return self.runtime.config.workflows.who == "registered" and registered

    def submit(
        self, caller: Caller, request: RunRequest, attachments: dict[str, bytes]
    ) -> RunRecord:
        """A run checked against the node's policy, staged, and handed to its supervisor."""
        if caller.sub is None:
            raise AccessDeniedError("workflow runs need to know who you are: send a Passport")
        if shutil.which(BWRAP) is None:
            raise ConfigError(
                "this node cannot run workflows: its sandbox needs bubblewrap, which its "
                "operator installs with `apt-get install bubblewrap`"
            )
        config = self.runtime.config.workflows
        engine = engines.engine_for(request.workflow_type, request.workflow_type_version,
                                    request.workflow_engine,
                                    request.workflow_engine_version)  # fmt: skip
        if "://" in request.workflow_url or request.workflow_url.startswith("/"):
            raise QueryError(
                "this node fetches nothing for a run: attach the workflow (workflow_attachment) "
                "and give its name as workflow_url"
            )
        for name in attachments:
            _safe_name(name)
        workflow = request.workflow_url
        if workflow not in attachments:
            raise QueryError(
                f"workflow_url {request.workflow_url!r} is not one of the attachments "
                f"({', '.join(sorted(attachments)) or 'none'})"
            )
        for name, content in sorted(attachments.items()):
            data = name != workflow and name.lower().endswith(DATA_SUFFIXES)
            if not data and digest(content) not in config.approved:
                raise AccessDeniedError(
                    f"{name} (sha256 {digest(content)}) is not a file this node's operator "
                    "approved (every attachment but data files ("
                    + ", ".join(DATA_SUFFIXES)
                    + ") must be); they approve one with "
                    "`genofed node workflow approve FILE` after reading it"
                )
        # a CWL job order may carry requirements and overrides of its own (an
        # EnvVarRequirement, cwltool:overrides): keys with a namespace or a '$' are refused
        odd = sorted(k for k in request.workflow_params if ":" in k or k.startswith("$"))
        if odd:
            raise QueryError(
                f"workflow_params may hold only the workflow's inputs, not {', '.join(odd)}"
            )
        for dataset in request.datasets:
            if not self._may_run(caller, dataset):  # the same answer whether it exists or not
                raise AccessDeniedError(
                    f"no dataset {dataset!r} you may run workflows on here: workflows need a "
                    "grant for each dataset they read"
                )
        record = RunRecord(
            run_id=self.store.new_id(),
            owner=owner_of(caller.sub, caller.iss),
            caller=caller.identity,
            request=request.model_dump(),
            engine=engine.name,
            engine_version=str(engine.version),
            workflow=workflow,
            digest=digest(attachments[workflow]),
            datasets=request.datasets,
            limits={
                "memory_mb": config.memory_mb,
                "cpu_s": config.cpu_s,
                "wall_s": config.wall_s,
                "cores": config.cores,
                "file_mb": config.file_mb,
                "processes": config.processes,
            },  # fmt: skip
        )
        params = json.dumps(request.workflow_params).encode()
        self.store.create(record, attachments, params)
        self.runtime.gate.audit.append({
            "event": "workflow-submit", "run": record.run_id,
            "caller": {"sub": caller.sub, "iss": caller.iss}, "workflow": record.digest,
            "engine": f"{engine.name} {engine.version}", "datasets": record.datasets,
            "params": digest(params), "policy": self.runtime.gate.policy_version,
        })  # fmt: skip
        self._start(record)
        return record

    def _start(self, record: RunRecord) -> None:
        folder = self.store.folder(record.run_id)
        try:
            with (folder / "supervisor.log").open("ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "genofed.wes.supervise",
                     str(self.runtime.node.root), record.run_id],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                )  # fmt: skip
        except OSError as exc:
            why = f"its supervisor could not start ({exc.strerror})"

            def failed(r: RunRecord) -> None:
                r.state, r.end_time = State.SYSTEM_ERROR, time.time()
                r.system_logs.append(why)

            self.store.update(record.run_id, failed)
            return
        # waited for here, so that it does not linger as a zombie of this server
        threading.Thread(target=process.wait, daemon=True, name=f"wes-{record.run_id}").start()

        def started(r: RunRecord) -> None:
            r.supervisor = process.pid

        self.store.update(record.run_id, started)

    # -- the spec's shapes -------------------------------------------------------------

    def review(self, record: RunRecord) -> dict[str, Any]:
        """Everything the airlock knows of each output: for the node's custodians."""
        return {o.name: {**o.as_json(), "airlock": o.state} for o in self._held(record)}

    def _held(self, record: RunRecord) -> list[Output]:
        return self.airlock.outputs(record.run_id) if record.state in FINISHED else []

    def run_log(self, record: RunRecord) -> dict[str, Any]:
        base = f"{PREFIX}/runs/{record.run_id}"
        return {
            "run_id": record.run_id,
            "request": {k: v for k, v in record.request.items() if v is not None},
            "state": record.state.value,
            "run_log": self._engine_log(record),
            "task_logs_url": f"{base}/tasks",  # task_logs, deprecated, is left out
            **self.outputs(record),
        }

    def outputs(self, record: RunRecord) -> dict[str, Any]:
        """What the owner may know of the run's outputs (``outputs``): the released ones,
        to download. Of the others only how many are held or rejected (``airlock``): their
        names, sizes, digests and check findings were made by the run, so could carry data."""
        held = self._held(record)
        return {
            "outputs": {o.name: _released(record, o) for o in held if o.state == "released"},
            "airlock": {
                state: sum(o.state == state for o in held)
                for state in ("held", "released", "rejected")
            },  # fmt: skip
        }

    def _engine_log(self, record: RunRecord) -> dict[str, Any]:
        base = f"{PREFIX}/runs/{record.run_id}/outputs/logs"
        log: dict[str, Any] = {
            "name": f"{record.engine} {record.engine_version}",
            "cmd": record.cmd,
            "stdout": f"{base}/stdout.txt",
            "stderr": f"{base}/stderr.txt",
            "system_logs": [
                *record.system_logs,
                "every output, the engine's stdout and stderr too, is held in the node's "
                "airlock until a custodian releases it; only released ones are listed",
            ],  # fmt: skip
        }
        for name, value in (("start_time", _iso(record.start_time)),
                            ("end_time", _iso(record.end_time)),
                            ("exit_code", record.exit_code)):  # fmt: skip
            if value is not None:
                log[name] = value
        return log

    def tasks(self, record: RunRecord) -> list[dict[str, Any]]:
        """The run's tasks: its engine's process (the engine schedules the steps within)."""
        if record.state in (State.QUEUED, State.CANCELED) and record.start_time is None:
            return []
        return [{"id": "engine", **self._engine_log(record)}]

    def summary(self, record: RunRecord) -> dict[str, Any]:
        summary: dict[str, Any] = {"run_id": record.run_id, "state": record.state.value,
                                   "tags": record.request.get("tags") or {}}  # fmt: skip
        if record.start_time is not None:
            summary["start_time"] = _iso(record.start_time)
        if record.end_time is not None:
            summary["end_time"] = _iso(record.end_time)
        return summary


def _released(record: RunRecord, output: Output) -> dict[str, Any]:
    return {"airlock": "released", "size": output.size, "sha256": output.sha256,
            "url": f"{PREFIX}/runs/{record.run_id}/outputs/{output.name}",
            "reason": output.reason}  # fmt: skip


def page(items: list[Any], page_size: int | None, token: str | None) -> tuple[list[Any], str]:
    """One page of a stable list, and the token of the next ('' at the end)."""
    size = PAGE_SIZE if page_size is None else max(1, min(page_size, 1000))
    try:
        start = int(token) if token else 0
    except ValueError:
        raise QueryError(f"page_token {token[:40]!r} is not one this service gave") from None
    if start < 0:
        raise QueryError("page_token must not be negative")
    chunk = items[start : start + size]
    return chunk, str(start + size) if start + size < len(items) else ""
