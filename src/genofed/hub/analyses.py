"""Federated analyses coordinated by the hub: GLMs, descriptive statistics and tables.

The hub holds no data and sees no node's statistics: every node runs each step of a vetted
analysis itself (``/analysis/v1/tasks``), applies its own disclosure rules, and sends what
is to be summed only into a secure sum, of which the hub learns the total. The hub's part
is the coordinator's: agree the levels of categorical variables, run the rounds, sum
(``secure_round``), update the model, and keep a record of every round and node.

An analysis is a job persisted under ``state_dir/analyses/<id>.json``, rewritten after
every step: a restarted hub finds it, and marks one that was running failed (the caller's
credentials are not kept, so it cannot go on as them). Cancelling sets a flag the
coordinator looks at between steps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from genofed._exceptions import GenofedError, NotFoundError, QueryError
from genofed.analysis import descriptive, design, firth, glm, gwas, ld, pca, plots, secure_sum
from genofed.config import HubNode
from genofed.criteria import CohortCriteria
from genofed.hub.client import NodeClient
from genofed.hub.fanout import Reply
from genofed.store.dosages import parse_region

TASKS = "/analysis/v1/tasks"
LONG_POLL_S = 25.0  # at most what a node waits for a task before answering (its limit: 30)
_FINISHED = ("succeeded", "failed", "cancelled")
# Secure rounds of independent blocks run at once: a node computes one block while the
# hub and the others exchange the shares and masks of another. Measured at 15,000 people
# x 100,000 variants over three node processes on two cores (bench/bench_gwas.py).
ROUNDS_IN_FLIGHT = 3
LearningStrategy = Literal["fedavg", "fedprox", "fedadam", "fedyogi"]

PCA_CANDIDATES = 20_000  # variants a PCA starts from at most (a node step names them all)


async def in_flight(steps: list[Any], limit: int) -> None:
    """Await the coroutines ``steps``, at most ``limit`` at a time; the first to fail
    cancels the others and its exception is raised (not an ExceptionGroup)."""
    window = asyncio.Semaphore(limit)

    async def bounded(step: Any) -> None:
        async with window:
            await step

    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(bounded(step))
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


class AnalysisRequest(BaseModel):
    """``POST /hub/analyses``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["glm", "describe", "table", "gwas", "pca", "learn"]
    formula: str | None = Field(None, max_length=1000, examples=["case ~ age + sex + bmi"])
    family: glm.Family = "gaussian"
    offset: str | None = Field(None, max_length=200, examples=["np.log(exposure)"])
    variables: list[str] = Field(default_factory=list, max_length=20, description="describe")
    row: str | None = Field(None, description="table: the row variable")
    column: str | None = Field(None, description="table: the column variable (optional)")
    phenotypes: list[str] = Field(default_factory=list, max_length=20, description="gwas")
    covariates: list[str] = Field(default_factory=list, max_length=50, description="gwas")
    region: str | None = Field(None, description="gwas: chrom:start-end (1-based)")
    min_mac: int = Field(3, ge=1, description="gwas: raises (never lowers) each node's")
    block: int = Field(4000, ge=10, le=5000, description="gwas: variants per secure round")
    firth_p: float = Field(0.05, ge=0, le=1, description="logistic gwas: Firth fits below")
    firth_max: int = Field(50, ge=0, le=1000, description="logistic gwas: at most this many")
    components: int = Field(10, ge=1, le=50, description="pca: how many components")
    min_maf: float = Field(0.05, ge=0, lt=0.5, description="pca: the pooled minimum MAF")
    max_variants: int = Field(
        5000, ge=10, le=20_000, description="pca: at most, spread evenly after LD pruning"
    )
    ld_r2: float = Field(0.2, gt=0, le=1, description="pca: prune pairs above this r² (1: none)")
    ld_window: int = Field(50, ge=2, le=100, description="pca: the pruning window, in variants")
    model: Literal["linear", "logistic"] = Field(
        "linear", description="gwas: linear (quantitative), logistic (binary: score test)"
    )
    target: str | None = Field(None, description="learn: the binary (0/1) variable to predict")
    features: list[str] = Field(
        default_factory=list, max_length=100, description="learn: clinical variables, PCs"
    )
    variants: list[str] = Field(
        default_factory=list, max_length=200, description="learn: variants (chrom-pos-ref-alt)"
    )
    pgs: list[tuple[str, float]] = Field(
        default_factory=list, max_length=20_000, description="learn: a polygenic score's weights"
    )
    learner: Literal["logistic", "mlp"] = Field("logistic", description="learn: the model")
    hidden: int = Field(16, ge=1, le=256, description="learn: the MLP's hidden units")
    strategy: LearningStrategy = Field("fedavg", description="learn: the server's strategy")
    rounds: int = Field(20, ge=1, le=1000, description="learn: training rounds")
    local_epochs: int = Field(1, ge=1, le=100, description="learn: epochs at a node per round")
    lr: float = Field(0.1, gt=0, le=100, description="learn: the nodes' learning rate")
    batch_size: int = Field(0, ge=0, le=1_000_000, description="learn: 0 for the full batch")
    local_optimizer: Literal["sgd", "adam"] = Field("sgd", description="learn: at the nodes")
    mu: float | None = Field(None, ge=0, le=100, description="learn: FedProx's μ (0.01)")
    server_lr: float | None = Field(
        None, gt=0, le=100, description="learn: 1 for FedAvg/FedProx, 0.1 for FedAdam/FedYogi"
    )
    fraction: float = Field(1.0, gt=0, le=1, description="learn: the share of nodes per round")
    dp_epsilon: float | None = Field(
        None, gt=0, le=100, description="learn: differential privacy of the updates at this ε"
    )
    dp_delta: float = Field(1e-5, gt=0, lt=1, description="learn: ... and this δ")
    dp_clip: float = Field(1.0, gt=0, le=1e6, description="learn: ... each update's largest norm")
    dp_sgd_noise: float | None = Field(
        None, gt=0, le=1e3, description="learn: DP-SGD at the nodes with this noise multiplier"
    )
    dp_sgd_clip: float = Field(1.0, gt=0, le=1e6, description="learn: ... per-row gradient norm")
    round_deadline_s: float = Field(
        120.0, gt=0, le=3600, description="learn: a node later than this sits the round out"
    )
    cohort: str | None = Field(None, description="A saved cohort's id: only its individuals")
    criteria: CohortCriteria | None = Field(None, description="Or the cohort's criteria")
    datasets: list[str] = Field(
        default_factory=list, description="<node>:<dataset>; nodes with none listed are not asked"
    )
    table: str | None = Field(None, description="A registered table each node joins in")
    node_deadline_s: float = Field(120.0, gt=0, le=3600, description="Per step, per node")

    @model_validator(mode="after")
    def _check(self) -> AnalysisRequest:
        if self.kind == "glm" and not self.formula:
            raise ValueError("a glm needs a formula, e.g. 'case ~ age + sex'")
        try:  # the nodes check again; a bad formula is refused here before any node works
            if self.formula:
                design.parse(self.formula)
            if self.offset:
                design.check_expression(self.offset, "offset")
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        if self.kind == "describe" and not self.variables:
            raise ValueError("describe needs variables")
        if self.kind == "table" and not self.row:
            raise ValueError("a table needs a row variable")
        if self.kind == "gwas" and (not self.phenotypes or not self.region):
            raise ValueError("a gwas needs phenotypes and a region (chrom:start-end)")
        if self.kind == "learn" and not self.target:
            raise ValueError("learning needs a target, e.g. 'case'")
        if self.kind == "learn" and not (self.features or self.variants or self.pgs):
            raise ValueError("learning needs features (clinical variables, PCs, variants or a PGS)")
        if self.dp_epsilon is not None and self.dp_sgd_noise is not None:
            raise ValueError("choose differential privacy of the updates or DP-SGD, not both")
        if self.dp_sgd_noise is not None and not self.batch_size:
            raise ValueError("DP-SGD samples batches: give a batch_size")
        if self.kind == "pca" and not self.region:
            raise ValueError("a pca needs a region (chrom:start-end) to take its variants from")
        if self.region is not None:
            try:
                parse_region(self.region)
            except QueryError as exc:
                raise ValueError(str(exc)) from None
        if self.cohort is not None and self.criteria is not None:
            raise ValueError("give a saved cohort or criteria, not both")
        for dataset in self.datasets:
            if ":" not in dataset:
                raise ValueError(f"datasets are <node>:<dataset>, not {dataset!r}")
        return self


class AnalysisCancelledError(GenofedError):
    """The owner cancelled the analysis."""


# --------------------------------------------------------------------------------------
# the job record
# --------------------------------------------------------------------------------------


@dataclass
class AnalysisJob:
    id: str
    owner: str
    request: dict[str, Any]
    state: str = "queued"  # queued, running, succeeded, failed, cancelled
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    message: str | None = None
    progress: dict[str, int] | None = None  # {"done", "total"} of a job's blocks
    curve: list[dict[str, Any]] | None = None  # learn: the training curve so far, each round
    rounds: list[dict[str, Any]] = field(default_factory=list)  # each step, each node
    excluded: dict[str, str] = field(default_factory=dict)  # node -> why it is not in
    result: dict[str, Any] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "message": self.message,
            "progress": self.progress,
            "curve": self.curve,
            "request": self.request,
            "rounds": self.rounds,
            "excluded": self.excluded,
            "result": self.result,
            "error": self.error,
        }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class AnalysisStore:
    """Analyses, one JSON file each (written atomically), and their cancel flags."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, job_id: str, suffix: str = ".json") -> Path:
        if not re.fullmatch(r"analysis-[0-9a-f]{16}", job_id):
            raise NotFoundError(f"no analysis {job_id!r}: ids are analysis- and 16 hex digits")
        return self.directory / f"{job_id}{suffix}"

    def new(self, owner: str, request: AnalysisRequest) -> AnalysisJob:
        job = AnalysisJob(
            f"analysis-{secrets.token_hex(8)}", owner, request.model_dump(exclude_none=True)
        )
        self.save(job)
        return job

    def save(self, job: AnalysisJob) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        job.updated = time.time()
        path = self._path(job.id)
        temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps({**job.__dict__}, indent=1))
        os.replace(temporary, path)

    def load(self, job_id: str) -> AnalysisJob:
        try:
            return AnalysisJob(**json.loads(self._path(job_id).read_text()))
        except FileNotFoundError:
            raise NotFoundError(f"no analysis {job_id!r}; GET /hub/analyses lists yours") from None

    def get(self, job_id: str, owner: str) -> AnalysisJob:
        job = self.load(job_id)
        if job.owner != owner:
            raise NotFoundError(f"no analysis {job_id!r}; GET /hub/analyses lists yours")
        return job

    def all(self, owner: str) -> list[AnalysisJob]:
        if not self.directory.is_dir():
            return []
        jobs = []
        for path in self.directory.glob("analysis-*.json"):
            try:
                job = AnalysisJob(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if job.owner == owner:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str, owner: str) -> AnalysisJob:
        job = self.get(job_id, owner)
        if job.state in ("queued", "running"):
            self._path(job_id, ".cancel").touch()
        return job

    def files(self, job_id: str) -> Path:
        """Where an analysis keeps its result files (tables, plots)."""
        return self._path(job_id, "")

    def cancelled(self, job_id: str) -> bool:
        return self._path(job_id, ".cancel").exists()

    def fail_interrupted(self) -> int:
        """Mark analyses a stopped hub left running as failed (at start-up)."""
        count = 0
        if not self.directory.is_dir():
            return 0
        for path in self.directory.glob("analysis-*.json"):
            try:
                job = AnalysisJob(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if job.state in ("queued", "running"):
                job.state = "failed"
                job.error = (
                    "the hub restarted while this analysis ran; run it again (the hub does not "
                    "keep your credentials, so it cannot resume as you)"
                )
                self.save(job)
                count += 1
        return count


# --------------------------------------------------------------------------------------
# asking the nodes
# --------------------------------------------------------------------------------------


@dataclass
class Member:
    """A node taking part: the hub's entry for it, its own name, the dataset asked."""

    hub: HubNode
    name: str  # the node's own name: what its peers pinned it as
    dataset: str | None


# What the coordinator reports as it goes: (event, details), for the job record.
Report = Callable[[str, dict[str, Any]], None]


def _outcome(reply: Reply) -> dict[str, Any]:
    return {k: v for k, v in reply.outcome().items() if k != "node"}


async def run_task(
    client: NodeClient, member: Member, body: dict[str, Any], deadline_s: float
) -> tuple[Reply, dict[str, Any] | None]:
    """One step at one node: the task created, then followed until it finishes. The
    node's reply, and the task's result when it succeeded."""
    end = time.monotonic() + deadline_s
    body = {**body, "dataset": member.dataset} if member.dataset else body

    def wait() -> list[tuple[str, str]]:  # the node answers once the task is done (long poll)
        return [("wait", f"{max(0.0, min(LONG_POLL_S, end - time.monotonic() - 1)):.3f}")]

    reply = await client.send(member.hub, "POST", TASKS, end, body=body, params=wait())
    while reply.status == "ok" and reply.document is not None:
        document = reply.document
        if document.get("state") in _FINISHED:
            if document["state"] == "succeeded":
                return reply, {**document.get("result", {}), "taskId": document["id"]}
            error = document.get("error") or {}
            return Reply(member.hub.name, "error", reply.ms, reply.http_status,
                         str(error.get("detail") or "the task failed")), None  # fmt: skip
        if time.monotonic() >= end:
            return Reply(member.hub.name, "timeout", detail="the task did not finish in time"), None
        if end - time.monotonic() < 1.5:
            await asyncio.sleep(0.05)  # too little time left to long-poll: ask again soon
        reply = await client.send(
            member.hub, "GET", f"{TASKS}/{document['id']}", end, params=wait()
        )
    return reply, None


@dataclass
class Round:
    """What a secure round gave: the sum, and how each node took part."""

    total: np.ndarray | None
    contributors: list[str]  # hub names of the nodes whose values are in the sum
    results: dict[str, dict[str, Any]]  # hub name -> its task result
    statuses: dict[str, dict[str, Any]]
    received: dict[str, np.ndarray] = field(default_factory=dict)  # the masked values


def _withheld(result: dict[str, Any]) -> str:
    failed = [r["detail"] for r in result.get("rules", []) if not r["passed"]]
    return "withheld by its disclosure rules: " + "; ".join(failed)


async def plain_step(
    client: NodeClient,
    members: list[Member],
    body: dict[str, Any],
    deadline_s: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """A step whose payload is released as it is (levels): each node's result and
    status, by hub name."""
    replies = await asyncio.gather(*(run_task(client, m, body, deadline_s) for m in members))
    results, statuses = {}, {}
    for member, (reply, result) in zip(members, replies, strict=True):
        name = member.hub.name
        status = _outcome(reply)
        if result is not None and not result.get("released"):
            status = {"status": "withheld", "detail": _withheld(result)}
        elif result is not None:
            results[name] = result
        if result is not None:
            status["rules"] = result.get("rules")
        statuses[name] = status
    return results, statuses


async def secure_round(
    client: NodeClient,
    members: list[Member],
    body: dict[str, Any],
    task_id: str,
    round_no: int,
    deadline_s: float,
    report: Report | None = None,
) -> Round:
    """One step whose payloads are summed securely: every node computes and shares, the
    nodes that shared mask, the nodes that masked reveal, and the hub unmasks the sum of
    the masked values. A node that stops answering after masking is still in the sum (its
    peers' shares unmask it); one that stops before is not, and the round says so."""
    by_name = {m.name: m for m in members}
    participants = sorted(by_name)
    secure = {"task": task_id, "round": round_no, "participants": participants}
    context = secure_sum.Context.of(task_id, round_no, participants)
    replies = await asyncio.gather(
        *(run_task(client, m, {**body, "secure": secure}, deadline_s) for m in members)
    )
    statuses: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    shared: dict[str, dict[str, Any]] = {}  # node name -> its secure part
    for member, (reply, result) in zip(members, replies, strict=True):
        status = _outcome(reply)
        if result is not None:
            status["rules"] = result.get("rules")
            if not result.get("released"):
                status.update(status="withheld", detail=_withheld(result))
            elif _well_shared(result.get("secure"), member.name, participants):
                results[member.hub.name] = result
                shared[member.name] = result["secure"]
            else:
                status.update(status="error", detail="answered without the shares of a secure sum")
        statuses[member.hub.name] = status
    if len({int(part["length"]) for part in shared.values()}) > 1:
        raise QueryError(
            "the nodes' payloads differ in length (do they run different versions of the "
            "analysis?): " + ", ".join(f"{n} {p['length']}" for n, p in shared.items())
        )
    if report is not None:
        report("shared", {"round": round_no, "nodes": statuses})

    def task_of(name: str) -> str:
        return str(results[by_name[name].hub.name]["taskId"])

    masked: dict[str, np.ndarray] = {}
    if len(shared) >= context.threshold:
        end = time.monotonic() + deadline_s

        async def mask(name: str) -> tuple[str, Reply]:
            shares = {s: p["shares"][name] for s, p in shared.items() if s != name}
            reply = await client.send(by_name[name].hub, "POST", f"{TASKS}/{task_of(name)}/mask",
                                      end, body={"shares": shares})  # fmt: skip
            return name, reply

        for name, reply in await asyncio.gather(*(mask(n) for n in shared)):
            vector = _masked_vector(reply, int(shared[name]["length"]))
            if vector is not None:
                masked[name] = vector
            else:
                statuses[by_name[name].hub.name] = {**_outcome(reply), "step": "mask"}
    if report is not None:
        report("masked", {"round": round_no, "masked": sorted(masked)})
    total = None
    if masked and len(masked) >= context.threshold:
        survivors = sorted(masked)
        end = time.monotonic() + deadline_s

        async def reveal(name: str) -> tuple[str, Reply]:
            return name, await client.send(
                by_name[name].hub, "POST", f"{TASKS}/{task_of(name)}/reveal", end,
                body={"survivors": survivors},
            )  # fmt: skip

        reveals = {}
        for name, reply in await asyncio.gather(*(reveal(n) for n in survivors)):
            if reply.status == "ok" and isinstance((reply.document or {}).get("reveals"), dict):
                reveals[name] = reply.document["reveals"]  # type: ignore[index]
            else:
                statuses[by_name[name].hub.name] = {
                    **statuses[by_name[name].hub.name],
                    "revealed": False,
                    "detail": f"masked, then did not reveal ({reply.detail}); its peers' "
                    "shares unmasked its value",
                }
        if len(reveals) >= context.threshold:
            total = secure_sum.unmask(context, sorted(shared), masked, reveals)
    contributors = [by_name[n].hub.name for n in sorted(masked)] if total is not None else []
    received = {by_name[n].hub.name: v for n, v in masked.items()}
    return Round(total, contributors, results, statuses, received)


def _well_shared(secure: Any, name: str, participants: list[str]) -> bool:
    """A node's secure part has a share for every other participant, and a length."""
    if not isinstance(secure, dict) or not isinstance(secure.get("shares"), dict):
        return False
    return set(secure["shares"]) == set(participants) - {name} and isinstance(
        secure.get("length"), int
    )


def _masked_vector(reply: Reply, length: int) -> np.ndarray | None:
    """The masked payload a node answered, if it is one of the agreed length."""
    if reply.status != "ok" or not isinstance((reply.document or {}).get("masked"), str):
        return None
    try:
        vector = np.frombuffer(base64.urlsafe_b64decode(reply.document["masked"]), np.uint64)  # type: ignore[index]
    except ValueError:
        return None
    return vector if vector.size == length else None


def decoded(round_: Round) -> np.ndarray:
    assert round_.total is not None
    part = next(iter(round_.results.values()))["secure"]
    return secure_sum.decode_wide(round_.total, int(part["fracBits"]))


# --------------------------------------------------------------------------------------
# the analyses
# --------------------------------------------------------------------------------------


@dataclass
class Coordinator:
    """Runs one analysis job to its end, writing its record after every step."""

    store: AnalysisStore
    job: AnalysisJob
    client: NodeClient
    members: list[Member]
    request: AnalysisRequest
    criteria: CohortCriteria | None

    def save(self, message: str | None = None) -> None:
        if message is not None:
            self.job.message = message
        self.store.save(self.job)
        if self.store.cancelled(self.job.id):
            raise AnalysisCancelledError("cancelled by its owner")

    def base(self, analysis: str) -> dict[str, Any]:
        body: dict[str, Any] = {"analysis": analysis, "job": self.job.id}
        if self.criteria is not None:
            body["cohort"] = self.criteria.model_dump(exclude_none=True, exclude={"datasets"})
        if self.request.table is not None:
            body["table"] = self.request.table
        return body

    def record(self, step: str, round_no: int | None, statuses: dict[str, Any]) -> None:
        """A step's node statuses; the rules a node checked are kept the first time a step
        runs, and later only when one failed (a GWAS has hundreds of rounds)."""
        if any(r["step"] == step for r in self.job.rounds):
            statuses = {
                name: {k: v for k, v in status.items()
                       if k != "rules" or any(not rule["passed"] for rule in v or [])}
                for name, status in statuses.items()
            }  # fmt: skip
        self.job.rounds.append({"step": step, "round": round_no, "nodes": statuses})

    def exclude(self, statuses: dict[str, dict[str, Any]], kept: set[str]) -> None:
        for member in list(self.members):
            name = member.hub.name
            if name not in kept:
                status = statuses.get(name, {})
                self.job.excluded[name] = str(status.get("detail") or status.get("status"))
                self.members.remove(member)

    async def levels(self, analysis: str, params: dict[str, Any]) -> dict[str, list[str]]:
        body = {**self.base(analysis), "params": {**params, "step": "levels"}}
        results, statuses = await plain_step(
            self.client, self.members, body, self.request.node_deadline_s
        )
        self.record("levels", None, statuses)
        self.exclude(statuses, set(results))
        if not self.members:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.job.excluded.items())
            raise QueryError(f"no node can run this analysis ({reasons})")
        self.save("levels agreed")
        return design.agree_levels([r["plain"]["levels"] for r in results.values()])

    async def summed(self, step: str, body: dict[str, Any], round_no: int) -> Round:
        """One secure round; the record says how each node took part."""

        def report(event: str, details: dict[str, Any]) -> None:
            self.job.message = f"round {round_no}: {event}"
            self.store.save(self.job)

        result = await secure_round(self.client, self.members, body, self.job.id, round_no,
                                    self.request.node_deadline_s, report)  # fmt: skip
        self.record(step, round_no, result.statuses)
        withheld = {n for n, s in result.statuses.items() if s.get("status") == "withheld"}
        self.exclude(result.statuses, {m.hub.name for m in self.members} - withheld)
        if result.total is None:
            reasons = "; ".join(
                f"{n}: {s.get('detail') or s.get('status')}" for n, s in result.statuses.items()
            )
            raise QueryError(f"the secure sum of {step} did not complete ({reasons})")
        return result

    async def run(self) -> dict[str, Any]:
        if self.request.kind == "glm":
            return await self.glm()
        if self.request.kind == "describe":
            return await self.describe()
        if self.request.kind == "gwas":
            return await self.gwas()
        if self.request.kind == "pca":
            return await self.pca()
        if self.request.kind == "learn":
            return await self.learn()
        return await self.table()

    def n_per_node(self, round_: Round) -> dict[str, Any]:
        return {name: result.get("n") for name, result in round_.results.items()}

    async def glm(self) -> dict[str, Any]:
        request = self.request
        model = {"formula": request.formula, "family": request.family}
        if request.offset:
            model["offset"] = request.offset
        levels = await self.levels("glm", model)
        fit: glm.GlmFit | None = None
        membership: list[str] | None = None
        first: Round | None = None
        round_no = 0
        while fit is None or not fit.done:
            params = {**model, "step": "fit", "levels": levels}
            if fit is not None:
                params |= {"beta": fit.beta, "null_eta": fit.null_eta}
            body = {**self.base("glm"), "params": params}
            result = await self.summed("fit", body, round_no)
            if membership is None:
                membership, first = result.contributors, result
                self.exclude(result.statuses, set(membership))
            elif result.contributors != membership:
                raise QueryError(
                    f"round {round_no} summed {', '.join(result.contributors)}, not the "
                    f"{', '.join(membership)} of the first round: a model needs the same "
                    "nodes in every round; run it again"
                )
            plains = [r["plain"] for r in result.results.values()]
            plain = plains[0]
            columns = plain["columns"]
            if any(p["columns"] != columns for p in plains):
                raise QueryError("the nodes coded the model with different columns")
            total = glm.GlmPart.from_vector(decoded(result), len(columns))
            if fit is None:
                fit = glm.start(request.family, columns, intercept=plain["intercept"])
            fit = glm.advance(fit, total)
            last = total
            round_no += 1
            self.save(f"iteration {fit.rounds}: deviance {total.deviance:.6g}")
        if fit.failed:
            raise QueryError(f"the model did not fit: {fit.failed}")
        summary = glm.summarise(fit, last).to_dict()
        assert first is not None
        return {
            "kind": "glm",
            "formula": request.formula,
            "family": request.family,
            "summary": summary,
            "levels": levels,
            "contributors": membership,
            "nPerNode": self.n_per_node(first),
        }

    async def describe(self) -> dict[str, Any]:
        names = list(dict.fromkeys(self.request.variables))
        body = {**self.base("describe"), "params": {"step": "moments", "variables": names}}
        result = await self.summed("moments", body, 0)
        moments = descriptive.describe(decoded(result), names)
        return {
            "kind": "describe",
            "statistics": moments.__dict__,
            "contributors": result.contributors,
            "nPerNode": self.n_per_node(result),
        }

    async def table(self) -> dict[str, Any]:
        request = self.request
        variables: dict[str, Any] = {"row": request.row}
        if request.column:
            variables["column"] = request.column
        levels = await self.levels("table", variables)
        body = {**self.base("table"), "params": {**variables, "step": "counts", "levels": levels}}
        result = await self.summed("counts", body, 0)
        counts = np.rint(decoded(result)).astype(np.int64)
        columns = levels[request.column] if request.column else ["n"]
        return {
            "kind": "table",
            "row": request.row,
            "column": request.column,
            "rows": levels[request.row],
            "columns": columns,
            "counts": counts.reshape(len(levels[request.row]), len(columns)).tolist(),
            "contributors": result.contributors,
            "nPerNode": self.n_per_node(result),
        }

    async def pca(self) -> dict[str, Any]:
        """Principal components: the common variants at every node, their pooled scaling,
        pruned by r² (one secure round of banded products), subspace iteration by secure
        rounds, then each node keeps its people's PCs."""
        request = self.request
        variants = await _pca_variants(self)
        base = {**self.base("pca")}
        moments = await self.summed("moments", {**base, "params": {
            "step": "moments", "variants": variants, "min_mac": request.min_mac}}, 0)  # fmt: skip
        sums, squares, observed = decoded(moments).reshape(3, -1)
        freq = sums / (2 * observed)
        common = np.minimum(freq, 1 - freq) >= request.min_maf
        variants = [v for v, keep in zip(variants, common, strict=True) if keep]
        if len(variants) <= request.components:
            raise QueryError(f"{len(variants)} common variants: too few for the components")
        total = np.concatenate([sums[common], squares[common], observed[common]])
        scaling = pca.Scaling.from_moments(total)
        pruning = {"candidates": len(variants), "window": request.ld_window, "r2": request.ld_r2}
        if request.ld_r2 < 1:
            params = {"step": "ld", "variants": variants, "mean": scaling.mean, "sd": scaling.sd,
                      "window": request.ld_window, "min_mac": request.min_mac}  # fmt: skip
            summed = await self.summed("ld", {**base, "params": params}, 1)
            band = decoded(summed).reshape(len(variants), request.ld_window)
            keep = ld.prune(band, request.ld_r2)
            variants = [v for v, k in zip(variants, keep, strict=True) if k]
            scaling = scaling.part(keep)
            pruning["pruned"] = int((~keep).sum())
            self.save(f"LD pruning kept {len(variants)} of {keep.size} common variants")
        if len(variants) > request.max_variants:  # spread evenly over what is left
            picks = np.linspace(0, len(variants) - 1, request.max_variants).round().astype(int)
            variants, scaling = [variants[i] for i in picks], scaling.part(picks)
        pruning["kept"] = len(variants)
        if len(variants) <= request.components:
            raise QueryError(f"{len(variants)} variants after pruning: too few for the components")
        fit = pca.start(len(variants), request.components, seed=secrets.randbits(32))
        round_no = 2
        while not fit.converged:
            params = {"step": "product", "variants": variants, "mean": scaling.mean,
                      "sd": scaling.sd, "q": fit.q, "min_mac": request.min_mac}  # fmt: skip
            summed = await self.summed("product", {**base, "params": params}, round_no)
            round_no += 1
            fit = pca.advance(fit, decoded(summed))
            self.save(f"iteration {fit.iterations}: subspace change {fit.change:.2e}")
        params = {"step": "keep", "variants": variants, "mean": scaling.mean, "sd": scaling.sd,
                  "q": [row[: fit.k] for row in fit.q], "eigenvalues": fit.eigenvalues,
                  "min_mac": request.min_mac}  # fmt: skip
        kept, statuses = await plain_step(
            self.client, self.members, {**base, "params": params}, request.node_deadline_s
        )
        self.record("keep", None, statuses)
        return {
            "kind": "pca",
            "components": [f"PC{i + 1}" for i in range(fit.k)],
            "eigenvalues": fit.eigenvalues,
            "iterations": fit.iterations,
            "change": fit.change,
            "variants": len(variants),
            "variantIds": variants,
            "ldPruning": pruning,
            "keptAt": sorted(kept),
            "contributors": summed.contributors,
            "note": "each node keeps its own people's components (variables PC1, PC2...); "
            "no one else sees them",
        }

    async def learn(self) -> dict[str, Any]:
        """Federated learning: the features' pooled scaling, then rounds in which the
        chosen nodes evaluate the current model and send their updates (summed securely),
        then the final model's evaluation at every node. A node late for a round sits it
        out; one whose rules refuse (its budget of rounds spent) is left out after."""
        from genofed.analysis import learning  # torch: only where a model is trained

        request = self.request
        model = {"target": request.target, "features": request.features,
                 "variants": request.variants, "pgs": request.pgs}  # fmt: skip
        levels = await self.levels("learn", model) if request.features else {}
        base = {**self.base("learn")}
        moments = await self.summed("moments", {**base, "params": {
            **model, "step": "moments", "levels": levels}}, 0)  # fmt: skip
        columns = _agreed_columns(moments)
        total = decoded(moments)
        scaling = learning.Scaling.from_moments(total, columns)
        spec = learning.ModelSpec(request.learner, len(columns), request.hidden)
        strategy = request.strategy
        optimiser = learning.ServerOptimiser(strategy, request.server_lr or (
            0.1 if strategy in ("fedadam", "fedyogi") else 1.0))  # fmt: skip
        mu = request.mu if request.mu is not None else (0.01 if strategy == "fedprox" else 0.0)
        state = learning.ServerState(learning.initial_weights(spec, secrets.randbits(32)).tolist())
        size = spec.size()
        fixed = {**model, "levels": levels, "model": request.learner, "hidden": request.hidden,
                 "mean": scaling.mean, "sd": scaling.sd}  # fmt: skip
        training = {"epochs": request.local_epochs, "lr": request.lr,
                    "batch_size": request.batch_size, "optimizer": request.local_optimizer,
                    "mu": mu}  # fmt: skip
        curve: list[dict[str, Any]] = []
        taking_part: list[dict[str, Any]] = []
        dp_sgd: dict[str, float | None] = {}  # each node's ε so far, by its own accountant
        sample_rate = _chosen_count(len(self.members), request.fraction) / len(self.members)
        multiplier = None
        if request.dp_epsilon is not None:
            multiplier = learning.noise_multiplier(request.dp_epsilon, request.dp_delta,
                                                   sample_rate, request.rounds)  # fmt: skip
        for round_no in range(1, request.rounds + 1):
            chosen = _chosen(self.members, request.fraction)
            params = {**fixed, **training, "step": "round", "weights": state.weights,
                      "seed": secrets.randbits(63)}  # fmt: skip
            if request.dp_sgd_noise is not None:
                params |= {"dp_sgd_noise": request.dp_sgd_noise, "round": round_no,
                           "dp_sgd_clip": request.dp_sgd_clip,
                           "dp_delta": request.dp_delta}  # fmt: skip
            if multiplier is not None:
                # each node adds its share of the noise: a sum of the fewest nodes that can
                # complete the round has all of it (σ times the clip)
                fewest = secure_sum.default_threshold(len(chosen))
                noise_sd = multiplier * request.dp_clip / math.sqrt(fewest)
                params |= {"clip": request.dp_clip, "noise_sd": noise_sd}
            result = await secure_round(
                self.client, chosen, {**base, "params": params}, self.job.id, round_no,
                request.round_deadline_s,
            )  # fmt: skip
            self.record("round", round_no, result.statuses)
            # a node late for this round sits it out; one that refused (its rules) or
            # failed (unreachable, an error) is left out of the rounds after it too
            gone = {n for n, s in result.statuses.items()
                    if s.get("status") in ("withheld", "error", "unauthorised")}  # fmt: skip
            self.exclude(result.statuses, {m.hub.name for m in self.members} - gone)
            left_out = {n: f"left out at an earlier step: {why}"
                        for n, why in self.job.excluded.items()}  # fmt: skip
            left_out.update({n: (f"late: no answer within the round's deadline of "
                                 f"{request.round_deadline_s:g} s (asked again next round)"
                                 if s.get("status") == "timeout"
                                 else str(s.get("detail") or s.get("status")))
                             for n, s in result.statuses.items()
                             if n not in result.contributors})  # fmt: skip
            left_out.update({m.hub.name: "not chosen for this round" for m in self.members
                             if m not in chosen})  # fmt: skip
            taking_part.append({"round": round_no, "nodes": result.contributors,
                                "leftOut": left_out})  # fmt: skip
            if request.dp_sgd_noise is not None:
                for name, node_result in result.results.items():
                    dp_sgd[name] = node_result["plain"].get("dpSgdEpsilon")
            if result.total is not None:
                total = decoded(result)
                evaluation = learning.Evaluation.from_total(total[: learning.EVALUATION_LENGTH])
                delta, _ = learning.average_update(total[learning.EVALUATION_LENGTH :], size)
                curve.append(_curve_point(round_no - 1, evaluation, result.contributors))
                state = learning.server_step(state, delta, optimiser)
            self.job.progress = {"done": round_no, "total": request.rounds}
            self.job.curve = curve
            self.save(f"round {round_no} of {request.rounds}: "
                      + (f"loss {curve[-1]['lossTest']:.4f}, AUC {curve[-1]['auc']:.4f}"
                         if curve else "no sum"))  # fmt: skip
            if not self.members:
                raise QueryError("every node left the training (see each node's status)")
        if not curve:
            raise QueryError("no round of training completed (see each node's status)")
        final_params = {**fixed, "step": "evaluate", "weights": state.weights}
        final = await self.summed("evaluate", {**base, "params": final_params}, request.rounds + 1)
        evaluation = learning.Evaluation.from_total(decoded(final))
        curve.append(_curve_point(state.rounds, evaluation, final.contributors))
        weights = np.asarray(state.weights)
        files = self.store.files(self.job.id)
        files.mkdir(parents=True, exist_ok=True)
        card = {
            "model": request.learner,
            "hidden": request.hidden if request.learner == "mlp" else None,
            "target": request.target,
            "features": columns,
            "scaling": {"mean": scaling.mean, "sd": scaling.sd},
            "strategy": strategy,
            "serverOptimiser": asdict(optimiser),
            "localTraining": training,
            "rounds": request.rounds,
            "roundsWithASum": len(curve) - 1,
            "fraction": request.fraction,
            "participation": taking_part,
            "rowsPerNode": self.n_per_node(moments),
            "evaluation": evaluation.to_dict(),
            "membershipInference": {
                "attack": "loss threshold: a row with a lower loss is guessed to be a training row",
                "auc": evaluation.membership_auc,
                "note": "0.5 is a guess; higher means the model tells its training rows apart",
            },
            "precision": _learning_precision(len(self.members)),
            "heldOut": f"{learning.HOLDOUT:.0%} of each node's rows, chosen by a hash of the "
            "individual's id",
            "missing": "a missing dosage is the pooled mean (0 after standardising)",
        }
        if multiplier is not None:
            card["differentialPrivacy"] = {
                "epsilon": learning.epsilon_spent(
                    multiplier, sample_rate, request.rounds, request.dp_delta
                ),
                "delta": request.dp_delta,
                "noiseMultiplier": multiplier,
                "clip": request.dp_clip,
                "sampleRate": sample_rate,
                "rounds": request.rounds,
                "accountant": "Opacus RDP",
                "unit": "one node's update in one round (DP-FedAvg: updates clipped, "
                "unweighted, Gaussian noise added by the nodes); the evaluation sums are not "
                "noised",
            }
        if request.dp_sgd_noise is not None:
            card["dpSgd"] = {
                "noiseMultiplier": request.dp_sgd_noise,
                "maxGradNorm": request.dp_sgd_clip,
                "delta": request.dp_delta,
                "epsilonPerNode": dp_sgd,
                "accountant": "Opacus RDP, at each node over its rows, as if it took part in "
                "every round (an upper bound otherwise); rounded to 0.01",
                "unit": "one row of a node",
            }
        if request.learner == "logistic":
            card["coefficients"] = learning.coefficients(weights, scaling, columns)
        written = _write_model(files, spec, weights, scaling, card, curve)
        return {
            "kind": "learn",
            **{k: card[k] for k in ("model", "target", "features", "strategy", "rounds")},
            "curve": curve,
            "evaluation": evaluation.to_dict(),
            "coefficients": card.get("coefficients"),
            "differentialPrivacy": card.get("differentialPrivacy"),
            "dpSgd": card.get("dpSgd"),
            "weights": state.weights,
            "modelCard": card,
            "files": sorted(p.name for p in written),
            "contributors": final.contributors,
        }

    async def firth_hits(
        self, table: pd.DataFrame, model: dict[str, Any], levels: dict, round_no: int
    ) -> tuple[pd.DataFrame, int]:
        """Firth-penalised fits of the score test's hits (P below firth_p, the smallest
        firth_max), as plink2's firth does: Newton rounds of secure sums (information,
        then the modified score), every hit still fitting in the same rounds."""
        request = self.request
        hits = table[table["P"] < request.firth_p].nsmallest(request.firth_max, "P")
        table = table.assign(FIRTH_BETA=np.nan, FIRTH_SE=np.nan, FIRTH_Z=np.nan, FIRTH_P=np.nan)
        p = len(model["beta"]) + 1
        fits = {index: firth.start(p) for index in hits.index}
        inverses: dict[Any, np.ndarray] = {}
        active = list(hits.index)

        def params(indices: list[Any], step: str, betas: list[list[float]]) -> dict[str, Any]:
            return {**self.base("gwas"), "params": {
                **model, "step": step, "levels": levels, "betas": betas,
                "variants": [hits.at[i, "ID"] for i in indices],
                "mean_dosages": [2 * float(hits.at[i, "A1_FREQ"]) for i in indices]}}  # fmt: skip

        while active:
            body = params(active, "firth_information", [fits[i].trial for i in active])
            summed = await self.summed("firth", body, round_no)
            round_no += 1
            accepted = []
            for i, part in zip(active, np.split(decoded(summed), len(active)), strict=True):
                try:
                    penalised, inverse = firth.penalised_and_inverse(part, p)
                except QueryError as exc:
                    fits[i].failed = str(exc)
                    continue
                if firth.accept(fits[i], penalised):
                    inverses[i] = inverse
                    accepted.append(i)
            if accepted:
                body = params(accepted, "firth_score", [fits[i].beta for i in accepted])
                body["params"]["inverses"] = [inverses[i].tolist() for i in accepted]
                score = await self.summed("firth", body, round_no)
                round_no += 1
                for i, part in zip(accepted, np.split(decoded(score), len(accepted)), strict=True):
                    firth.advance(fits[i], inverses[i], part)
            active = [i for i in active if not (fits[i].converged or fits[i].failed)]
            self.save(f"Firth fits: {len(hits) - len(active)} of {len(hits)} done")
        for i, fit in fits.items():
            if fit.converged:
                result = firth.summarise(fit, inverses[i])
                table.loc[i, ["FIRTH_BETA", "FIRTH_SE", "FIRTH_Z", "FIRTH_P"]] = [
                    result.beta[-1], result.se[-1], result.z[-1], result.p[-1]]  # fmt: skip
        return table, len(hits)

    async def gwas(self) -> dict[str, Any]:
        """A GWAS: covariate levels agreed; for a logistic model, the null model (the
        covariates only) fitted by GLM rounds; the variants every node can take part in;
        then one secure round per block of variants."""
        request = self.request
        model = {"phenotypes": request.phenotypes, "covariates": request.covariates,
                 "min_mac": request.min_mac, "model": request.model}  # fmt: skip
        levels = await self.levels("gwas", model)
        secure_round_no, null_summary = 0, None
        if request.model == "logistic":
            fit, last = None, None
            while fit is None or not fit.done:
                params = {**model, "step": "null", "levels": levels}
                if fit is not None:
                    params |= {"beta": fit.beta, "null_eta": fit.null_eta}
                summed = await self.summed("null", {**self.base("gwas"), "params": params},
                                           secure_round_no)  # fmt: skip
                secure_round_no += 1
                self.exclude(summed.statuses, set(summed.contributors))
                plain = next(iter(summed.results.values()))["plain"]
                last = glm.GlmPart.from_vector(decoded(summed), plain["k"])
                if fit is None:
                    fit = glm.start("binomial", plain["covariates"], intercept=plain["intercept"])
                fit = glm.advance(fit, last)
                self.save(f"null model, iteration {fit.rounds}")
            if fit.failed:
                raise QueryError(f"the null model did not fit: {fit.failed}")
            model |= {"beta": fit.beta}
            null_summary = glm.summarise(fit, last).to_dict()
        body = {**self.base("gwas"), "params": {**model, "step": "variants",
                                                "region": request.region}}  # fmt: skip
        results, statuses = await plain_step(
            self.client, self.members, body, self.request.node_deadline_s
        )
        self.record("variants", None, statuses)
        self.exclude(statuses, set(results))
        lists = [r["plain"]["variants"] for r in results.values()]
        if not lists:
            raise QueryError("no node could list its variants (see each node's status)")
        everywhere = set(lists[0]).intersection(*lists[1:])
        variants = [v for v in lists[0] if v in everywhere]
        withheld = dict.fromkeys(results, 0)
        union = set().union(*lists)
        self.save(f"{len(variants):,} variants at every node")
        blocks = [variants[i : i + request.block] for i in range(0, len(variants), request.block)]
        self.job.progress = {"done": 0, "total": len(blocks)}
        frames: list[pd.DataFrame | None] = [None] * len(blocks)
        contributors: list[str] | None = None
        done = 0

        async def block_round(round_no: int, block: list[str]) -> None:
            nonlocal contributors, done
            body = {**self.base("gwas"), "params": {**model, "step": "block", "variants": block,
                                                    "levels": levels}}  # fmt: skip
            summed = await self.summed("block", body, secure_round_no + round_no)
            if contributors is None:
                contributors = summed.contributors
                self.exclude(summed.statuses, set(contributors))
            elif summed.contributors != contributors:
                raise QueryError(f"block {round_no} summed other nodes than the first block")
            plain = next(iter(summed.results.values()))["plain"]
            # a variant withheld by one node (rare there) is left out of the whole analysis
            left_out = np.zeros(len(block), dtype=bool)
            for name in summed.contributors:
                at = np.asarray(summed.results[name]["plain"]["withheld"], dtype=np.int64)
                withheld[name] = withheld.get(name, 0) + len(at)
                left_out[at] = True
            if request.model == "logistic":
                score = gwas.ScoreBlockPart.from_vector(decoded(summed), plain["k"], len(block))
                rows = _score_rows(block, gwas.score_association(score), plain)
            else:
                total = gwas.LinearBlockPart.from_vector(decoded(summed), plain["k"],
                                                         plain["m"], len(block))  # fmt: skip
                rows = _association_rows(block, gwas.linear_association(total), plain)
            frames[round_no] = rows[~np.tile(left_out, len(rows) // len(block))]
            done += 1
            self.job.progress = {"done": done, "total": len(blocks)}
            self.save(f"block {done} of {len(blocks)}")

        await in_flight([block_round(i, b) for i, b in enumerate(blocks)], ROUNDS_IN_FLIGHT)
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()  # type: ignore[arg-type]
        if request.model == "logistic" and len(table) and request.firth_p > 0:
            round_no = secure_round_no + len(blocks)
            table, fitted = await self.firth_hits(table, model, levels, round_no)
        else:
            fitted = 0
        files = self.store.files(self.job.id)
        files.mkdir(parents=True, exist_ok=True)
        written, summary = [], {}
        for phenotype in request.phenotypes:
            rows = table
            if len(table):
                rows = table[table["PHENO"] == phenotype].drop(columns=["PHENO"])
            suffix = "logistic.score" if request.model == "logistic" else "linear"
            tsv, parquet = files / f"{phenotype}.glm.{suffix}", files / f"{phenotype}.parquet"
            rows.to_csv(tsv, sep="\t", index=False, na_rep="NA")
            rows.to_parquet(parquet, index=False)
            written += [tsv, parquet]
            if len(rows):
                written += plots.manhattan(rows, f"{phenotype} ~ ALT dosage", files /
                                           f"manhattan-{phenotype}")  # fmt: skip
                written += plots.qq(rows["P"].to_numpy(), phenotype, files / f"qq-{phenotype}")
            top = rows.nsmallest(10, "P") if len(rows) else rows
            summary[phenotype] = {
                "lambdaGC": plots.genomic_inflation(rows["P"].to_numpy()) if len(rows) else None,
                "top": top.replace({np.nan: None}).to_dict(orient="records"),
            }
        tested = len(table["ID"].unique()) if len(table) else 0
        return {
            "kind": "gwas",
            "model": request.model,
            "nullModel": null_summary,
            "firthFits": fitted,
            "phenotypes": request.phenotypes,
            "covariates": request.covariates,
            "region": request.region,
            "variants": {
                "tested": tested,
                # not in some node's data, or withheld by some node (rare there: its min_mac)
                "leftOut": len(union) - tested,
                "vetoedPerNode": withheld,
            },  # fmt: skip
            "imputation": "missing genotypes are imputed with the variant's pooled mean dosage",
            "phenotypeSummary": summary,
            "files": sorted(p.name for p in written),
            "contributors": contributors or [],
        }


async def _pca_variants(coordinator: Coordinator) -> list[str]:
    """The variants every node can take part in, spread evenly to at most
    ``PCA_CANDIDATES`` (the most a step may name) before they are filtered and pruned."""
    request = coordinator.request
    body = {**coordinator.base("pca"), "params": {"step": "variants", "region": request.region,
                                                  "min_mac": request.min_mac}}  # fmt: skip
    results, statuses = await plain_step(
        coordinator.client, coordinator.members, body, request.node_deadline_s
    )
    coordinator.record("variants", None, statuses)
    coordinator.exclude(statuses, set(results))
    lists = [r["plain"]["variants"] for r in results.values()]
    if not lists:
        raise QueryError("no node could list its variants (see each node's status)")
    everywhere = set(lists[0]).intersection(*lists[1:])
    variants = [v for v in lists[0] if v in everywhere]
    if len(variants) > PCA_CANDIDATES:
        picks = np.linspace(0, len(variants) - 1, PCA_CANDIDATES).round().astype(int)
        variants = [variants[i] for i in picks]
    return variants


def _agreed_columns(round_: Round) -> list[str]:
    """The features every node built, which must be the same columns."""
    columns = {tuple(r["plain"]["columns"]) for r in round_.results.values()}
    if len(columns) != 1:
        raise QueryError(f"the nodes built different features: {sorted(columns)}")
    return list(columns.pop())


def _chosen(members: list[Member], fraction: float) -> list[Member]:
    """The nodes of a round: a random ``fraction`` of them (at least one)."""
    k = _chosen_count(len(members), fraction)
    if k == len(members):
        return list(members)
    return sorted(random.SystemRandom().sample(members, k), key=lambda m: m.name)


def _chosen_count(nodes: int, fraction: float) -> int:
    return nodes if fraction >= 1 else max(1, math.ceil(fraction * nodes))


def _curve_point(trained: int, evaluation: Any, nodes: list[str]) -> dict[str, Any]:
    """The evaluation of the model after ``trained`` rounds, by the nodes that sent it."""
    return {"round": trained, "lossTrain": evaluation.loss_train,
            "lossTest": evaluation.loss_test, "auc": evaluation.auc,
            "membershipAuc": evaluation.membership_auc, "nodes": nodes}  # fmt: skip


def _learning_precision(nodes: int) -> dict[str, Any]:
    """What the fixed-point encoding of the secure sums costs: every value a node sends
    is rounded to a multiple of 2^-32, so a sum of n nodes is off by at most n/2^33."""
    return {"fracBits": 32, "maxAbsErrorPerSum": nodes * 2.0**-33,
            "note": "each summed value (a node's weighted update, its row count) is exact "
            "to this bound; the average update divides it by the rows that trained"}  # fmt: skip


def _write_model(files: Path, spec: Any, weights: np.ndarray, scaling: Any, card: dict,
                 curve: list[dict[str, Any]]) -> list[Path]:  # fmt: skip
    """The model as a PyTorch state dict and as ONNX (both on unstandardised features,
    output the logit), its card (JSON), its training curve (TSV, PNG, SVG)."""
    import torch

    from genofed.analysis import learning

    module = learning.released(spec, weights, scaling)
    state, onnx = files / "model.pt", files / "model.onnx"
    torch.save(module.state_dict(), state)
    example = torch.zeros((2, spec.inputs), dtype=torch.float64)
    # the exporter prints its progress, logs what it skips, warns of its own deprecations
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(onnx), input_names=["features"],
                          output_names=["logit"], external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("rows")},))  # fmt: skip
    card_path = files / "model-card.json"
    card_path.write_text(json.dumps(card, indent=1))
    table = files / "curve.tsv"
    pd.DataFrame(curve).drop(columns=["nodes"]).to_csv(table, sep="\t", index=False)
    title = f"{card['model']} by {card['strategy']}: {card['target']}"
    return [state, onnx, card_path, table, *plots.training_curve(curve, title, files / "curve")]


def _variant_columns(block: list[str], alt_freq: np.ndarray) -> dict[str, Any]:
    """The columns that name each variant of a block (from its id, chrom-pos-ref-alt);
    A1 is the ALT allele (plink2's is the minor one)."""
    parts = [v.split("-", 3) for v in block]
    alts = [p[3] for p in parts]
    return {"#CHROM": [p[0] for p in parts], "POS": [int(p[1]) for p in parts], "ID": block,
            "REF": [p[2] for p in parts], "ALT": alts, "A1": alts, "A1_FREQ": alt_freq}  # fmt: skip


def _score_rows(
    block: list[str], results: gwas.ScoreResults, plain: dict[str, Any]
) -> pd.DataFrame:
    """Rows of a logistic GWAS: the score test of each variant at the pooled null model
    (``Z_STAT``, ``P``), with the score and its variance (``U``, ``V``)."""
    return pd.DataFrame({
        **_variant_columns(block, results.alt_freq),
        "TEST": "SCORE",
        "OBS_CT": results.n,
        "MISSING_CT": (results.n - results.observed).astype(int),
        "U": results.u,
        "V": results.v,
        "Z_STAT": results.z,
        "P": results.p,
        "ERRCODE": np.where(np.isfinite(results.z), ".", "CONST_OMITTED_ALLELE"),
        "PHENO": plain["phenotypes"][0],
    })  # fmt: skip


def _association_rows(
    block: list[str], results: gwas.LinearResults, plain: dict[str, Any]
) -> pd.DataFrame:
    """plink2-like rows (A1 is the ALT allele; plink2's is the minor one) for each
    phenotype of a block."""
    frames = []
    for j, phenotype in enumerate(plain["phenotypes"]):
        frames.append(pd.DataFrame({
            **_variant_columns(block, results.alt_freq),
            "TEST": "ADD",
            "OBS_CT": results.n,
            "MISSING_CT": (results.n - results.observed).astype(int),
            "BETA": results.beta[:, j],
            "SE": results.se[:, j],
            "T_STAT": results.t[:, j],
            "P": results.p[:, j],
            "ERRCODE": np.where(np.isfinite(results.beta[:, j]), ".", "CONST_OMITTED_ALLELE"),
            "PHENO": phenotype,
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def owner_of(claims: dict[str, Any]) -> str:
    """Whose an analysis is: a digest of the caller's subject and issuer."""
    sub, iss = claims.get("sub"), claims.get("iss")
    if not sub or not iss:
        raise QueryError("the token names no subject and issuer")
    return hashlib.sha256(f"{sub}\0{iss}".encode()).hexdigest()
