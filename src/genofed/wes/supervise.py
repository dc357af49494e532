"""The supervisor of one workflow run, a process of its own (started by the node when the
run is submitted) so that the run outlives the request, whichever server worker took it:

    python -m genofed.wes.supervise NODE_DIR RUN_ID

It waits for a free slot (QUEUED), prepares the sandbox (INITIALIZING), runs the engine in
it (RUNNING) within the run's limits, stops it when its owner cancels or its wall time is
up, and when it ends puts what it made, and its logs, into the airlock.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from genofed.config import load_config
from genofed.governance.audit import AuditLog
from genofed.store.node_dir import NodeDir
from genofed.wes import engines
from genofed.wes.airlock import Airlock
from genofed.wes.runs import RunRecord, RunStore, State
from genofed.wes.sandbox import Limits, Sandbox, limiter

POLL_S = 0.1
ENGINE_OUTPUTS = "wes-outputs.json"  # the outputs object the engine printed
MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def _slot(store: RunStore, slots: int, run_id: str) -> tuple[int, IO[str]] | None:
    """A held lock on one of the node's run slots (its number, and the lock), once one is
    free; None if the run was cancelled while it queued."""
    folder = store.root / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for n in range(slots):
            handle = (folder / str(n)).open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return n, handle
            except BlockingIOError:
                handle.close()
        if store.cancelled(run_id):
            return None
        time.sleep(POLL_S * 2)


def _outputs(results: Path, work: Path) -> tuple[dict[str, Path], int]:
    """The files a run made under ``results``, and how many it left out; a link is
    followed to its file if that is inside the run's own ``work`` (a link made in the
    sandbox names /workflow/...). Nothing the run named reaches a message: a name can
    carry data."""
    found: dict[str, Path] = {}
    if results.is_symlink() or not results.is_dir():
        return found, int(results.is_symlink())  # an out/ that points elsewhere: nothing
    work = work.resolve()
    skipped = 0
    for path in sorted(results.rglob("*")):
        try:
            real = path
            for _ in range(40):  # a chain of links, each resolved as the sandbox saw it
                if not real.is_symlink():
                    break
                target = Path(os.readlink(real))
                if target.is_absolute() and target.is_relative_to(engines.WORKDIR):
                    target = work / target.relative_to(engines.WORKDIR)
                real = real.parent / target
            real = real.resolve(strict=True)
            if real.is_dir():
                continue
            if not real.is_file() or not real.is_relative_to(work):
                skipped += 1
                continue
        except (OSError, RuntimeError):  # a loop, a dangling link, a file it cannot read
            skipped += 1
            continue
        found[str(path.relative_to(results))] = real
    return found, skipped


def _write_new(path: Path, text: str) -> None:
    """A file the supervisor writes, never through a link (it is outside the sandbox's
    reach too, but a file is only ever created here, not replaced)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def supervise(node_dir: Path, run_id: str) -> RunRecord:
    node = NodeDir(node_dir)
    config = load_config(node.config_path)
    store = RunStore(node.state_dir)
    audit = AuditLog(node.audit_path)
    folder = store.folder(run_id)
    record = store.load(run_id)
    limits = Limits(**record.limits)

    def move(state: State, *logs: str, **changes: object) -> RunRecord:
        def change(r: RunRecord) -> None:
            if r.state.finished:
                return
            if r.state != State.CANCELING or state.finished:  # a cancel is not undone
                r.state = state
            r.system_logs.extend(logs)
            for name, value in changes.items():
                setattr(r, name, value)
            if state.finished:
                r.end_time = time.time()

        moved = store.update(run_id, change)
        audit.append({"event": "workflow-run", "run": run_id, "state": moved.state.value,
                      "owner": moved.caller, "workflow": moved.digest,
                      "datasets": moved.datasets})  # fmt: skip
        return moved

    taken = _slot(store, config.workflows.concurrent_runs, run_id)
    if taken is None:
        return move(State.CANCELED, "cancelled by its owner while it queued")
    slot, lock = taken
    with lock:
        engine = next(e for e in engines.ENGINES if e.name == record.engine)
        datasets = {}
        catalog = node.read_catalog()["datasets"]
        for dataset in record.datasets:
            entry = catalog.get(dataset)
            if entry is None:
                return move(State.SYSTEM_ERROR, f"dataset {dataset} is no longer served here")
            datasets[dataset] = node.root / "datasets" / dataset / entry["version"]
        sandbox = Sandbox(folder / "work", folder / "tmp", datasets)
        argv = engine.command(record.workflow, "params.json", limits.cores)
        try:
            command = sandbox.command(argv, engine.environment())
        except Exception as exc:  # noqa: BLE001 - the run fails, and says why
            return move(State.SYSTEM_ERROR, f"the sandbox could not be prepared: {exc}")
        move(State.INITIALIZING, cmd=argv)
        stdout = (folder / "stdout.log").open("wb")
        stderr = (folder / "stderr.log").open("wb")
        try:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                       stdin=subprocess.DEVNULL, preexec_fn=limiter(limits, slot),
                                       start_new_session=True)  # fmt: skip
        except OSError as exc:
            return move(State.SYSTEM_ERROR, f"the engine could not start: {exc}")
        move(State.RUNNING, start_time=time.time())
        end = time.monotonic() + limits.wall_s
        why = None
        while process.poll() is None:
            if store.cancelled(run_id):
                why = "cancelled"
            elif time.monotonic() > end:
                why = "wall"
            if why is not None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                break
            time.sleep(POLL_S)
        stdout.close()
        stderr.close()
        code = process.returncode
        logs = {"logs/stdout.txt": folder / "stdout.log", "logs/stderr.txt": folder / "stderr.log"}
        airlock = Airlock(store.runs, audit, config.workflows.airlock)
        if why == "cancelled":
            airlock.hold(run_id, logs)
            return move(State.CANCELED, "cancelled by its owner", exit_code=code)
        if why == "wall":
            airlock.hold(run_id, logs)
            return move(State.EXECUTOR_ERROR, f"killed: its wall-time limit of {limits.wall_s} s "
                        "was reached", exit_code=code)  # fmt: skip
        if code != 0:
            tail = (folder / "stderr.log").read_bytes()[-20_000:].decode("utf-8", "replace")
            notes = [f"the engine exited with code {code}"]
            if code == -signal.SIGXCPU or code == 128 + signal.SIGXCPU or "CPU time" in tail:
                notes.append(f"its CPU limit of {limits.cpu_s} s was reached")
            if any(sign in tail for sign in MEMORY_SIGNS):
                notes.append(f"it ran out of memory: its limit is {limits.memory_mb} MB")
            if "File size limit" in tail or code == -signal.SIGXFSZ:
                notes.append(f"it wrote a file over its limit of {limits.file_mb} MB")
            airlock.hold(run_id, logs)
            return move(State.EXECUTOR_ERROR, "; ".join(notes), exit_code=code)
        results = folder / "work" / engine.results.relative_to(engines.WORKDIR)
        made, skipped = _outputs(results, folder / "work")
        values = _engine_values(folder / "stdout.log")
        if values is not None:  # values the engine reports (an Int, a String) are outputs too
            # in the run's folder, which the sandbox never sees (its /tmp is the run's own)
            _write_new(folder / ENGINE_OUTPUTS, json.dumps(values, indent=1))
            made[ENGINE_OUTPUTS] = folder / ENGINE_OUTPUTS
        held = airlock.hold(run_id, {**made, **logs})
        notes = [f"{len(held)} outputs held in the airlock"]
        if skipped:
            notes.append(f"{skipped} entries of out/ were left out (links outside the run, "
                         "loops, or files that could not be read)")  # fmt: skip
        return move(State.COMPLETE, *notes, exit_code=code)


def _engine_values(stdout: Path) -> dict[str, object] | None:
    """The outputs object an engine prints (cwltool's, miniwdl's), without file details."""
    try:
        document = json.loads(stdout.read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    outputs = document.get("outputs", document) if "dir" in document else document

    def plain(value: object) -> object:
        if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
            return {"class": value["class"], "basename": value.get("basename")}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str) and value.startswith(str(engines.WORKDIR)):
            return Path(value).name
        return value

    return {k: plain(v) for k, v in outputs.items()} if isinstance(outputs, dict) else None


def main() -> None:
    node_dir, run_id = Path(sys.argv[1]), sys.argv[2]
    store = RunStore(NodeDir(node_dir).state_dir)
    try:
        supervise(node_dir, run_id)
    except Exception as exc:  # noqa: BLE001 - whatever happened, the run says so
        why = f"the supervisor failed: {type(exc).__name__}: {exc}"

        def failed(r: RunRecord) -> None:
            if not r.state.finished:
                r.state, r.end_time = State.SYSTEM_ERROR, time.time()
                r.system_logs.append(why)

        store.update(run_id, failed)
        raise


if __name__ == "__main__":
    main()
