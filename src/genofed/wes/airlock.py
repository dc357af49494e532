"""The output airlock: nothing a run makes leaves the node until a custodian releases it.

When a run ends, every file it wrote under ``out/`` (and its engine's stdout and stderr,
which can hold data as easily as any file) is copied into the run's ``airlock/`` and
checked. Tabular outputs (CSV, TSV) get ACRO's statistical disclosure checks, under ACRO's
names and defaults (``acro``'s ``default.yaml``; ACRO itself checks tables its own API
builds inside the researcher's code, not files a workflow wrote, so the rules are applied
here to the file's cells):

* ``threshold``: a count cell below ``safe_threshold`` (10), zero excepted;
* ``zeros``: a count cell of 0, when ``zeros_are_disclosive``;
* ``p-ratio`` and ``nk-rule`` (dominance): for a magnitude column ``X`` with the columns
  ``X_top1`` and ``X_top2`` (its two largest contributions), the rest below
  ``safe_pratio_p`` of the largest, or the ``safe_nk_n`` (2) largest above ``safe_nk_k``
  (0.9) of the total;
* ``dof``: residual degrees of freedom (a column ``dof``, ``df_resid`` or ``df_residual``)
  below ``safe_dof_threshold`` (10);
* ``missing``: a missing cell, when ``check_missing_values``.

Count cells are the integer cells of the columns whose names match ``count_columns``. A file
of any other kind has no automatic check ("review"). Either way the custodian decides
(``genofed airlock release|reject``, or the API); only a released output can be downloaded,
and every check and decision is in the audit log.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from genofed._exceptions import AccessDeniedError, ConfigError, NotFoundError, QueryError
from genofed.config import AirlockRules, load_config
from genofed.governance.audit import AuditLog
from genofed.jobs.runtime import write_atomically
from genofed.store.node_dir import NodeDir
from genofed.wes.runs import RunStore

TABULAR = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
MAX_CHECKED_BYTES = 50_000_000  # a larger table is for the custodian to review by hand

Decision = Literal["held", "released", "rejected"]


@dataclass
class Check:
    rule: str
    passed: bool
    detail: str


@dataclass
class Output:
    name: str  # its path under the run's out/ (logs: logs/stdout.txt, logs/stderr.txt)
    size: int
    sha256: str
    automatic: Literal["passed", "failed", "review"]
    checks: list[Check] = field(default_factory=list)
    state: Decision = "held"
    decided_by: str | None = None
    reason: str | None = None
    decided_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Output:
        return cls(**{**data, "checks": [Check(**c) for c in data.get("checks", [])]})


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_table(content: bytes, delimiter: str, rules: AirlockRules) -> list[Check]:
    """ACRO's checks over one table's cells: one Check per rule, failed where any cell
    fails it (the first few cells named)."""
    lines = content.decode("utf-8", "replace").removeprefix("\ufeff").splitlines()
    while lines and lines[0].startswith("##"):  # meta lines, as a VCF's
        lines.pop(0)
    if lines and lines[0].startswith("#"):  # a header such as plink2's #CHROM
        lines[0] = lines[0][1:]
    try:
        rows = [row for row in csv.reader(lines, delimiter=delimiter) if row]
    except csv.Error:
        return []  # not a table the checks can read: for the custodian to review
    if not rows:
        return []
    header, body = [name.strip() for name in rows[0]], rows[1:]
    counts = re.compile(rules.count_columns, re.IGNORECASE)
    index = {name: i for i, name in enumerate(header)}
    found: dict[str, list[str]] = {"threshold": [], "zeros": [], "p-ratio": [], "nk-rule": [],
                                   "dof": [], "missing": []}  # fmt: skip
    for r, row in enumerate(body, start=2):
        for name, i in index.items():
            text = row[i].strip() if i < len(row) else ""
            value = _number(text)
            where = f"line {r}, column {name}"
            if value is None:
                if rules.check_missing_values and text.upper() in ("", "NA", "NAN", "NULL", "."):
                    found["missing"].append(where)
                continue
            if counts.fullmatch(name) and value == int(value):
                if value == 0 and rules.zeros_are_disclosive:
                    found["zeros"].append(f"{where}: 0")
                elif 0 < value < rules.safe_threshold:
                    found["threshold"].append(f"{where}: {value:g} < {rules.safe_threshold}")
            residual = name.lower() in ("dof", "df_resid", "df_residual")
            if residual and value < rules.safe_dof_threshold:
                found["dof"].append(f"{where}: {value:g} < {rules.safe_dof_threshold}")
            top1, top2 = index.get(f"{name}_top1"), index.get(f"{name}_top2")
            if top1 is not None and top2 is not None:
                first = _number(row[top1]) if top1 < len(row) else None
                second = _number(row[top2]) if top2 < len(row) else None
                if first is None or second is None:
                    continue
                if value - first - second < rules.safe_pratio_p * first:
                    found["p-ratio"].append(f"{where}: the rest is under "
                                            f"{rules.safe_pratio_p:g} of the largest")  # fmt: skip
                largest = first + (second if rules.safe_nk_n >= 2 else 0)
                if value > 0 and largest > rules.safe_nk_k * value:
                    found["nk-rule"].append(f"{where}: the {rules.safe_nk_n} largest are over "
                                            f"{rules.safe_nk_k:g} of the total")  # fmt: skip
    checks = []
    for rule, cells in found.items():
        if rule == "missing" and not rules.check_missing_values:
            continue
        if rule == "zeros" and not rules.zeros_are_disclosive:
            continue
        shown = "; ".join(cells[:3]) + (f"; and {len(cells) - 3} more" if len(cells) > 3 else "")
        checks.append(Check(rule, not cells, shown or "no cell fails it"))
    return checks


class Airlock:
    """A node's held outputs, by run: ``state/wes/runs/<id>/airlock/``."""

    def __init__(self, runs: Path, audit: AuditLog, rules: AirlockRules):
        self.runs, self.audit, self.rules = runs, audit, rules

    @classmethod
    def of_node(cls, root: Path) -> Airlock:
        """A node's airlock, as its operator opens it (the CLI): its rules from node.yaml."""
        node = NodeDir(root)
        rules = load_config(node.config_path).workflows.airlock
        return cls(RunStore(node.state_dir).runs, AuditLog(node.audit_path), rules)

    def _folder(self, run_id: str) -> Path:
        folder = self.runs / run_id / "airlock"
        if not re.fullmatch(r"run-[0-9a-f]{20}", run_id) or not folder.is_dir():
            raise NotFoundError(f"no run {run_id[:80]!r} with outputs here")
        return folder

    @contextlib.contextmanager
    def _locked(self, run_id: str) -> Iterator[Path]:
        folder = self._folder(run_id)
        with (folder / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield folder

    def outputs(self, run_id: str) -> list[Output]:
        path = self._folder(run_id) / "outputs.json"
        if not path.exists():
            return []
        return [Output.from_json(o) for o in json.loads(path.read_text())]

    def _save(self, folder: Path, outputs: list[Output]) -> None:
        write_atomically(folder / "outputs.json",
                         json.dumps([o.as_json() for o in outputs], indent=1).encode())  # fmt: skip

    def hold(self, run_id: str, files: dict[str, Path]) -> list[Output]:
        """Copy a finished run's files (name -> where they are) into its airlock, check
        each, and record them as held."""
        held = []
        with self._locked(run_id) as folder:
            for name, source in sorted(files.items()):
                target = folder / "files" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)  # follows links: the content, not a pointer
                content = target.read_bytes()  # once: for its digest and its checks
                checks: list[Check] = []
                delimiter = TABULAR.get(target.suffix.lower())
                if delimiter is not None and len(content) <= MAX_CHECKED_BYTES:
                    checks = check_table(content, delimiter, self.rules)
                passed = all(c.passed for c in checks)
                automatic = "review" if not checks else "passed" if passed else "failed"
                digest = hashlib.sha256(content).hexdigest()
                held.append(Output(name, len(content), digest, automatic, checks))
            self._save(folder, held)
        for output in held:
            self.audit.append({"event": "airlock-check", "run": run_id, "output": output.name,
                               "sha256": output.sha256, "automatic": output.automatic,
                               "checks": [asdict(c) for c in output.checks]})  # fmt: skip
        return held

    def decide(self, run_id: str, name: str, decision: Decision, by: str, reason: str) -> Output:
        """A custodian's release or rejection of one held output, with a reason."""
        if decision not in ("released", "rejected"):
            raise QueryError("a custodian releases or rejects an output")
        if not reason.strip():
            raise QueryError("say why: a release or rejection needs a reason (--reason)")
        with self._locked(run_id) as folder:
            outputs = self.outputs(run_id)
            chosen = next((o for o in outputs if o.name == name), None)
            if chosen is None:
                known = ", ".join(o.name for o in outputs) or "none"
                raise NotFoundError(f"run {run_id} has no output {name!r}; its outputs: {known}")
            if chosen.state != "held":
                raise QueryError(f"{name} of run {run_id} was {chosen.state} already "
                                 f"(by {chosen.decided_by}: {chosen.reason})")  # fmt: skip
            chosen.state, chosen.decided_by, chosen.reason = decision, by, reason.strip()
            chosen.decided_at = time.time()
            self._save(folder, outputs)
        event = {"released": "airlock-release", "rejected": "airlock-reject"}[decision]
        self.audit.append({"event": event, "run": run_id,
                           "output": name, "sha256": chosen.sha256, "by": by,
                           "reason": chosen.reason, "automatic": chosen.automatic})  # fmt: skip
        return chosen

    def released(self, run_id: str, name: str) -> Path:
        """A released output's file, for download; held and rejected ones are refused."""
        outputs = {o.name: o for o in self.outputs(run_id)}
        output = outputs.get(name)
        if output is None:
            raise NotFoundError(f"run {run_id} has no output {name!r}")
        if output.state != "released":
            raise AccessDeniedError(
                f"{name} is {output.state} in the node's airlock"
                + (
                    ": a custodian must release it before it can be downloaded"
                    if output.state == "held"
                    else f" ({output.reason})"
                )  # fmt: skip
            )
        path = self._folder(run_id) / "files" / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != output.sha256:
            raise ConfigError(f"the airlock's copy of {name} changed after it was checked")
        return path
