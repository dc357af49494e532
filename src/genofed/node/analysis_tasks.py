"""The node's side of federated analysis: tasks of vetted analyses, and the node's steps
of the secure sums that carry their results.

A task is one step of one analysis (``analysis.catalogue``) over one dataset, optionally
restricted to a cohort. It runs as a job, off the event loop. Before it starts the node
checks who may run it (``datasets.<id>.analysis`` in node.yaml: grant holders by default)
and charges the caller's daily analysis budget for the dataset. The step's payload passes
the node's disclosure rules or is withheld whole; every task is audited (caller, analysis
and version, dataset version, a digest of the parameters, each rule, a digest of what
left).

A payload to be summed never leaves in the clear: it is encoded (fixed point, 32
fractional bits in three limbs), kept at the node, and only its secure-sum shares and,
later, its masked value leave (``mask``, ``reveal``), each bound to the task's id and
round.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from genofed._exceptions import AccessDeniedError, QueryError, SecureSumError
from genofed.analysis import catalogue, gwas, secure_sum
from genofed.criteria import CohortCriteria
from genofed.governance.access import Caller, Standing
from genofed.governance.disclosure import QueryBudget, safe_count
from genofed.governance.keys import load_or_create_aggregation_key, public_key_of
from genofed.governance.sqlite_state import SqliteState
from genofed.jobs.runtime import Job, JobRecord
from genofed.store import dosages
from genofed.store.dataset_reader import DatasetReader
from genofed.store.filters import parse_filter
from genofed.store.registered_tables import RegisteredTable, registered_tables
from genofed.store.selection import VARIANT, Context, select
from genofed.store.variables import individuals_frame

KIND = "analysis"
FRAC_BITS = 32  # fractional bits of every summed value (encode_wide's three limbs)
_PAYLOAD = "payload"  # the encoded payload, kept at the node: never served
_ID_COLUMNS = ("individual_id", "sample_id", "id")
_FRAMES_KEPT = 4  # frames of recent tasks, for the next rounds of the same model


class SecureRound(BaseModel):
    """The secure sum a task's payload goes into."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(pattern=r"^[A-Za-z0-9_-]{8,100}$", description="The hub's job id")
    round: int = Field(ge=0, le=10_000)
    participants: list[str] = Field(min_length=1, max_length=100)
    threshold: int | None = Field(None, ge=1)

    def context(self) -> secure_sum.Context:
        return secure_sum.Context.of(self.task, self.round, self.participants, self.threshold)


class TaskRequest(BaseModel):
    """``POST /analysis/v1/tasks``."""

    model_config = ConfigDict(extra="forbid")
    analysis: str = Field(description="A name from GET /analysis/v1/catalogue")
    version: str | None = Field(None, description="The version expected (refused if not here)")
    dataset: str | None = Field(None, description="Needed when the caller may analyse several")
    cohort: CohortCriteria | None = Field(None, description="Only these individuals")
    table: str | None = Field(
        None, description="A table registered with `genofed node table`, joined by individual id"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    secure: SecureRound | None = None
    job: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{8,100}$",
        description="The coordinator's analysis id: its steps count once in the budget",
    )  # fmt: skip


class Shares(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shares: dict[str, str] = Field(description="Sealed shares for this node, by sender")


class Survivors(BaseModel):
    model_config = ConfigDict(extra="forbid")
    survivors: list[str] = Field(min_length=1, max_length=100)


@dataclass(frozen=True)
class Prepared:
    """A task checked and ready to run."""

    request: TaskRequest
    analysis: catalogue.Analysis
    reader: DatasetReader
    caller: Caller


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text)
    except ValueError:
        raise QueryError("a share is not base64url") from None


@dataclass
class TaskData:
    """``catalogue.NodeData`` for one task: the rows of one dataset (and cohort, and
    table), and its genotypes read with dask where node.yaml's ``compute`` says."""

    tasks: AnalysisTasks
    reader: DatasetReader
    cohort: CohortCriteria | None
    table: RegisteredTable | None

    def frame(self, names: set[str]) -> pd.DataFrame:
        return self.tasks.frame(self.reader, self.cohort, self.table, names)

    def variants(self, region: str | None, ids: list[str] | None) -> pd.DataFrame:
        return dosages.variant_rows(self.reader, region, ids)

    def genotyped(self) -> set[str]:
        return {individual for _, individual in self.reader.samples if individual}

    def keep_components(self, components: pd.DataFrame) -> None:
        path = components_path(self.tasks.runtime.node, self.reader.dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        components.rename_axis("individual_id").to_parquet(temporary)
        os.replace(temporary, path)

    def training_round(self, limit: int) -> int | None:
        # one count per dataset in a small file, under a lock: server workers share it
        path = self.tasks.runtime.node.state_dir / "training-rounds" / f"{self.reader.dataset_id}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            used = int(handle.read().strip() or 0)
            if used >= limit:
                return None
            handle.seek(0)
            handle.truncate()
            handle.write(str(used + 1))
            handle.flush()
            os.fsync(handle.fileno())
            return used + 1

    def _columns(self, individuals: pd.Index) -> tuple[np.ndarray, int]:
        """The genotype-matrix column of each individual, and how many columns there are."""
        samples = self.reader.samples
        column = {ind: i for i, (_, ind) in enumerate(samples)}
        return np.array([column[i] for i in individuals], dtype=np.int64), len(samples)

    def dosages(
        self, variants: pd.DataFrame, individuals: pd.Index
    ) -> Iterator[tuple[slice, np.ndarray]]:
        yield from dosages.blocks(
            dosages.genotype_array(self.reader.version.genotypes),
            variants["site_idx"].to_numpy(),
            variants["allele_idx"].to_numpy(),
            self._columns(individuals)[0],
            dosages.Compute.of(self.tasks.runtime.config.compute),
        )

    def sums(
        self, variants: pd.DataFrame, individuals: pd.Index, d: np.ndarray, e: np.ndarray
    ) -> gwas.DosageSums:
        # D and e over every genotype column, zero for the people not in the analysis
        columns, width = self._columns(individuals)
        d_all, e_all = np.zeros((width, d.shape[1])), np.zeros(width)
        d_all[columns], e_all[columns] = d, e
        gd, gg, md = dosages.sums(
            dosages.Genotypes.open(self.reader.version.genotypes),
            variants["site_idx"].to_numpy(),
            variants["allele_idx"].to_numpy(),
            d_all,
            e_all,
            dosages.Compute.of(self.tasks.runtime.config.compute),
        )
        return gwas.DosageSums(gd, gg, md)


def components_path(node: Any, dataset_id: str) -> Path:
    """Where a node keeps its people's principal components of a dataset (never served;
    used as the variables PC1, PC2... of later analyses)."""
    return node.state_dir / "components" / f"{dataset_id}.parquet"


def _table_frame(table: RegisteredTable) -> pd.DataFrame:
    """A registered table's columns, indexed by individual id."""
    con = duckdb.connect(str(table.path), read_only=True)
    try:
        frame = con.execute("SELECT * FROM data").df()
    finally:
        con.close()
    key = next((c for c in _ID_COLUMNS if c in frame.columns), None)
    if key is None:
        raise QueryError(
            f"table {table.name!r} has no individual id column ({', '.join(_ID_COLUMNS)})"
        )
    if frame[key].duplicated().any():
        raise QueryError(f"table {table.name!r} has more than one row per individual")
    return frame.set_index(frame[key].astype(str)).drop(columns=[key])


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


class AnalysisTasks:
    """One node's analysis tasks (built per request from the runtime's current state)."""

    def __init__(self, runtime: Any):  # NodeRuntime (node.runtime imports this module)
        self.runtime = runtime
        self._frames: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self._tables: tuple[tuple, list[RegisteredTable]] | None = None
        self._lock = threading.Lock()
        self.budget = QueryBudget(
            runtime.node.state_dir / "analysis-budgets.sqlite",
            None,
            unit="analyses on this dataset",
        )
        self._seen = SqliteState(
            runtime.node.state_dir / "analysis-jobs-seen.sqlite",
            "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY);",
            durable=False,
        )

    # -- before a task runs ------------------------------------------------------------

    def prepare(self, caller: Caller, request: TaskRequest) -> Prepared:
        """The request checked (fast, in the request): the analysis, its version, the
        dataset and the caller's right to analyse it, and the budget charged."""
        analysis = catalogue.analysis_of(request.analysis)
        if request.version is not None and request.version != analysis.version:
            raise QueryError(
                f"{analysis.name} is version {analysis.version} here, not {request.version}"
            )
        catalogue.parameters(analysis, request.params)  # a bad parameter: 400 now
        if caller.sub is None:
            raise AccessDeniedError("analyses need to know who you are: send a Passport")
        reader = self._dataset(caller, request.dataset)
        if request.secure is not None:
            self._secure_node().check(request.secure.context())
        config = self.runtime.config
        self.budget.per_day = config.analysis.budget_per_day
        if self._first_step(caller, reader.dataset_id, request.job):
            self.budget.charge(f"{caller.identity} | {reader.dataset_id}")
        return Prepared(request, analysis, reader, caller)

    def _first_step(self, caller: Caller, dataset_id: str, job: str | None) -> bool:
        """Whether this step starts an analysis (the budget counts analyses: a GWAS's
        hundreds of rounds are one); a step that names no hub job counts by itself."""
        if job is None:
            return True
        con = self._seen()
        key = f"{caller.identity} | {dataset_id} | {job}"
        return con.execute("INSERT OR IGNORE INTO seen VALUES (?)", [key]).rowcount == 1

    def _may_analyse(self, caller: Caller, reader: DatasetReader) -> bool:
        gate = self.runtime.gate
        entitlement = gate.access.entitlement(
            caller, reader.dataset_id, reader.tier, reader.granularity
        )
        if entitlement is None:
            return False
        policy = self.runtime.config.datasets.get(reader.dataset_id)
        who = policy.analysis if policy is not None else "granted"
        if entitlement.standing == Standing.GRANTED:
            return True
        return who == "registered" and entitlement.standing == Standing.REGISTERED

    def _dataset(self, caller: Caller, dataset_id: str | None) -> DatasetReader:
        readers = self.runtime.live().readers
        mine = [r for r in readers.values() if self._may_analyse(caller, r)]
        if dataset_id is not None:
            reader = readers.get(dataset_id)
            if reader is None or reader not in mine:
                # the same answer whether it does not exist or is closed to the caller
                raise AccessDeniedError(
                    f"no dataset {dataset_id!r} you may analyse here: analyses need a grant "
                    "for the dataset (or, where the node allows it, registered-researcher "
                    "status)"
                )
            return reader
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise AccessDeniedError(
                "no dataset here you may analyse: analyses need a grant for the dataset "
                "(or, where the node allows it, registered-researcher status)"
            )
        names = ", ".join(sorted(r.dataset_id for r in mine))
        raise QueryError(f"name the dataset to analyse: you may analyse {names}")

    # -- the task ----------------------------------------------------------------------

    def run(self, prepared: Prepared, job: Job) -> None:
        """The job's body: the step, its rules, the audit entry, and the secure shares."""
        request, reader = prepared.request, prepared.reader
        config = self.runtime.config
        job.update(progress=0.1, message="reading the variables")
        result = catalogue.run_step(
            request.analysis,
            request.params,
            self._data(prepared),
            config.analysis.rules,
        )
        encoded: np.ndarray | None = None
        shares: dict[str, str] | None = None
        context = request.secure.context() if request.secure is not None else None
        if result.released and result.vector is not None:
            if context is None:
                raise QueryError(
                    "this step's statistics leave the node only inside a secure sum: give "
                    "'secure' (task, round, participants)"
                )
            encoded = secure_sum.encode_wide(result.vector, FRAC_BITS, len(context.participants))
        if encoded is not None and context is not None:
            job.update(progress=0.8, message="sharing the secure-sum seeds")
            sealed = self._secure_node().share(context)  # a replayed round: refused here
            shares = {peer: _b64(blob) for peer, blob in sealed.items()}
        output = None
        if result.released:
            output = _digest({"plain": result.plain, "vector": None if encoded is None
                              else hashlib.sha256(encoded.tobytes()).hexdigest()})  # fmt: skip
        self._audit(prepared, job.id, result, output, context)
        if encoded is not None:
            job.publish(_PAYLOAD, encoded.tobytes())
        disclosure = config.disclosure
        n, dropped = safe_count(result.n, disclosure), safe_count(result.n_dropped, disclosure)
        job.update(
            progress=1.0,
            message="done" if result.released else "withheld: a disclosure rule failed",
            result={
                "node": config.name,
                "analysis": request.analysis,
                "version": prepared.analysis.version,
                "dataset": reader.dataset_id,
                "datasetVersion": reader.version.version,
                "released": result.released,
                "rules": [c.to_dict() for c in result.checks],
                "n": {"value": n.value, "precision": n.precision.value},
                "nDropped": {"value": dropped.value, "precision": dropped.precision.value},
                "plain": result.plain if result.released else None,
                "secure": None
                if shares is None or request.secure is None
                else {
                    **request.secure.model_dump(),
                    "length": int(encoded.size),  # type: ignore[union-attr]
                    "fracBits": FRAC_BITS,
                    "encoding": "wide-3x32",
                    "shares": shares,
                },
            },
        )

    def _data(self, prepared: Prepared) -> TaskData:
        request = prepared.request
        table = None if request.table is None else self._table(prepared.caller, request.table)
        return TaskData(self, prepared.reader, request.cohort, table)

    def frame(
        self,
        reader: DatasetReader,
        cohort: CohortCriteria | None,
        table: RegisteredTable | None,
        names: set[str],
    ) -> pd.DataFrame:
        """A step's rows, read once per dataset version, cohort, table and variables: the
        rounds of a model ask for the same rows again (kept for a few tasks)."""
        source = None if table is None else (str(table.path), table.path.stat().st_mtime_ns)
        digest = None if cohort is None else _digest(cohort.model_dump())
        kept = components_path(self.runtime.node, reader.dataset_id)
        pcs = kept.stat().st_mtime_ns if kept.exists() else None  # a new PCA: new rows
        key = (str(reader.version.path), digest, source, pcs, frozenset(names))
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
                return frame
        frame = self._read_frame(reader, cohort, table, names)
        with self._lock:
            self._frames[key] = frame
            while len(self._frames) > _FRAMES_KEPT:
                self._frames.popitem(last=False)
        return frame

    def _read_frame(
        self,
        reader: DatasetReader,
        cohort: CohortCriteria | None,
        table: RegisteredTable | None,
        names: set[str],
    ) -> pd.DataFrame:
        ids = None if cohort is None else self._cohort_ids(reader, cohort)
        columns = None if table is None else _table_frame(table)
        from_table = set() if columns is None else names & set(columns.columns)
        pcs = {n for n in names - from_table if re.fullmatch(r"PC[1-9][0-9]?", n)}
        frame = individuals_frame(reader, names - from_table - pcs, self.runtime.ontology, ids=ids)
        if columns is not None and from_table:
            frame = frame.join(columns[sorted(from_table)], how="left")
        if pcs:
            path = components_path(self.runtime.node, reader.dataset_id)
            if not path.exists():
                raise QueryError(
                    f"no principal components of {reader.dataset_id} here: run a PCA first "
                    "(genofed pca)"
                )
            kept = pd.read_parquet(path)
            missing = sorted(pcs - set(kept.columns))
            if missing:
                raise QueryError(f"the last PCA kept no {', '.join(missing)}")
            frame = frame.join(kept[sorted(pcs)], how="left")
        return frame

    def _cohort_ids(self, reader: DatasetReader, cohort: CohortCriteria) -> set[str]:
        """The dataset's individuals who meet the cohort's criteria, by the Beacon's
        filter semantics (the same criteria the hub's cohorts count)."""
        live = self.runtime.live()
        filters = [parse_filter(f) for f in cohort.filters()]
        context = None
        if cohort.variant is not None:
            context = Context(VARIANT, cohort.variant.variant_id())
        selection = select(
            reader,
            "individual",
            filters=filters,
            context=context,
            filter_context=live.filter_context([reader.dataset_id]),
        )
        return set(selection.ids)

    def _registered(self) -> list[RegisteredTable]:
        """The node's registered tables, read again when a table file changes (reading
        each table's description opens its file)."""
        directory = self.runtime.node.tables_dir
        files = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("*.duckdb")))
        with self._lock:
            if self._tables is None or self._tables[0] != files:
                self._tables = (files, registered_tables(self.runtime.node))
            return self._tables[1]

    def _table(self, caller: Caller, name: str) -> RegisteredTable:
        """A registered table the caller may see (refused otherwise, as if it did not
        exist)."""
        for table in self._registered():
            if table.name == name and self.runtime.gate.access.entitlement(
                caller, table.name, table.tier, "record"
            ):
                return table
        raise AccessDeniedError(f"no table {name!r} you may use here")

    def _audit(
        self,
        prepared: Prepared,
        task: str,
        result: catalogue.StepResult,
        output: str | None,
        context: secure_sum.Context | None,
    ) -> None:
        caller, request, reader = prepared.caller, prepared.request, prepared.reader
        self.runtime.gate.audit.append(
            {
                "event": "analysis-task",
                "caller": {"sub": caller.sub, "iss": caller.iss},
                "task": task,
                "analysis": request.analysis,
                "version": prepared.analysis.version,
                "dataset": reader.dataset_id,
                "datasetVersion": reader.version.version,
                "params": _digest(request.params),
                "cohort": None
                if request.cohort is None
                else _digest(request.cohort.model_dump(exclude_none=True)),  # fmt: skip
                "table": request.table,
                "rules": [c.to_dict() for c in result.checks],
                "decision": "released" if result.released else "withheld",
                "output": output,
                "secureSum": None if context is None else context.digest,
                "policy": self.runtime.gate.policy_version,
            }
        )

    # -- the secure-sum steps ----------------------------------------------------------

    def _secure_node(self) -> secure_sum.SecureSumNode:
        config = self.runtime.config
        node = self.runtime.node
        return secure_sum.SecureSumNode(
            config.name,
            load_or_create_aggregation_key(node.aggregation_key_path),
            {name: public_key_of(key) for name, key in config.analysis.peers.items()},
            min_participants=config.analysis.min_participants,
            rounds=secure_sum.FileRounds(node.state_dir / "secure-sums"),
        )

    def _secure_task(self, record: JobRecord) -> tuple[secure_sum.Context, np.ndarray]:
        secure = record.result.get("secure")
        if record.kind != KIND or not secure:
            raise SecureSumError("this task has no secure sum (withheld, or not finished)")
        context = SecureRound.model_validate(
            {k: secure[k] for k in ("task", "round", "participants", "threshold")}
        ).context()
        raw = self.runtime.jobs.output(record.id, _PAYLOAD)
        if raw is None:
            raise SecureSumError("this task's payload is gone (it expired): run the step again")
        return context, np.frombuffer(raw, dtype=np.uint64)

    def mask(self, record: JobRecord, shares: Shares) -> dict[str, Any]:
        context, encoded = self._secure_task(record)
        sealed = {sender: _unb64(text) for sender, text in shares.shares.items()}
        masked = self._secure_node().mask(context, encoded, sealed)
        return {"task": record.id, "round": context.round, "masked": _b64(masked.tobytes())}

    def reveal(self, record: JobRecord, survivors: Survivors) -> dict[str, Any]:
        context, _ = self._secure_task(record)
        reveals = self._secure_node().reveal(context, survivors.survivors)
        # The payload is no longer needed: what it masked is summed, or never will be.
        self.runtime.jobs.remove_output(record.id, _PAYLOAD)
        return {"task": record.id, "round": context.round, "reveals": reveals}


def task_view(record: JobRecord) -> dict[str, Any]:
    """A task as its owner sees it."""
    out: dict[str, Any] = {
        "id": record.id,
        "state": record.state.value,
        "progress": record.progress,
        "message": record.message,
    }
    if record.error is not None:
        out["error"] = record.error
    if record.result:
        out["result"] = record.result
    return out
