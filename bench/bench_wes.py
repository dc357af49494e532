"""WES benchmark (issue #16), against a live node (``genofed node serve`` on 127.0.0.1):

* the overhead of a run: a trivial CWL workflow submitted over WES and followed to
  COMPLETE (staging, the supervisor, the sandbox, the airlock's checks), against cwltool
  running the same workflow directly in this script, in the same run, interleaved
  (medians of ``--repeats``);
* ``--concurrent`` runs (20) submitted at once to one node (which runs
  ``workflows.concurrent_runs`` at a time and queues the rest): each must COMPLETE; against
  cwltool running the same workflow as many times, as many at a time.

    python bench/bench_wes.py --out bench/results/wes.json  [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.governance, tests.live_server
sys.path.insert(0, str(Path(__file__).parent))  # bench_gwas, a sibling script

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.governance import build_governed_node  # noqa: E402
from tests.live_server import start_node_server  # noqa: E402

from bench_gwas import machine_info  # noqa: E402
from genofed.config import load_config  # noqa: E402

TRIVIAL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [echo, done]
inputs: []
outputs:
  said: {type: stdout}
stdout: said.txt
"""
FINISHED = ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED")
console = Console(stderr=True)


def submit(http: httpx.Client) -> str:
    data = {"workflow_type": "CWL", "workflow_type_version": "v1.2", "workflow_url": "trivial.cwl"}
    files = {"workflow_attachment": ("trivial.cwl", TRIVIAL.encode())}
    response = http.post("/ga4gh/wes/v1/runs", data=data, files=files)
    response.raise_for_status()
    return str(response.json()["run_id"])


def follow(http: httpx.Client, run_id: str, every_s: float = 0.02, timeout_s: float = 600) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        state = http.get(f"/ga4gh/wes/v1/runs/{run_id}/status").json()["state"]
        if state in FINISHED:
            return str(state)
        time.sleep(every_s)
    return "TIMEOUT"


def direct(workdir: Path) -> float:
    """cwltool on the same workflow, as the node's engine runs it but without WES."""
    workdir.mkdir(parents=True)
    workflow, params = workdir / "trivial.cwl", workdir / "params.json"
    workflow.write_text(TRIVIAL)
    params.write_text("{}")
    cwltool = str(Path(sys.executable).parent / "cwltool")
    start = time.perf_counter()
    subprocess.run([cwltool, "--no-container", "--outdir", str(workdir / "out"), str(workflow),
                    str(params)], check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 6 concurrent runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.concurrent = 2, 6
    with tempfile.TemporaryDirectory(prefix="bench-wes-") as tmp:
        root = Path(tmp)
        gov = build_governed_node(root)
        (root / "trivial.cwl").write_text(TRIVIAL)
        subprocess.run([str(Path(sys.executable).parent / "genofed"), "node", "workflow",
                        "approve", str(gov.node.root), str(root / "trivial.cwl")],
                       check=True, capture_output=True)  # fmt: skip
        slots = load_config(gov.node.config_path).workflows.concurrent_runs
        server, base = start_node_server(gov.node.root, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)  # fmt: skip
        token = gov.passport("bench-1", grants=("ctrl",))
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                follow(http, submit(http))  # warm: the first run imports cwltool cold
                direct(root / "warm")
                wes, plain = [], []
                for k in range(args.repeats):
                    start = time.perf_counter()
                    state = follow(http, submit(http))
                    wes.append(time.perf_counter() - start)
                    assert state == "COMPLETE", state
                    plain.append(direct(root / f"direct-{k}"))
                console.print(f"one run: WES {statistics.median(wes):.2f} s, "
                              f"cwltool directly {statistics.median(plain):.2f} s")  # fmt: skip
                start = time.perf_counter()
                with ThreadPoolExecutor(args.concurrent) as pool:
                    ids = list(pool.map(lambda _: submit(http), range(args.concurrent)))
                    # polled 4 times a second: 20 callers at 50 Hz would load the node
                    states = list(pool.map(lambda r: follow(http, r, 0.25), ids))
                together = time.perf_counter() - start
                start = time.perf_counter()  # the same runs by cwltool, as many at a time
                with ThreadPoolExecutor(slots) as pool:
                    list(pool.map(lambda k: direct(root / f"many-{k}"), range(args.concurrent)))
                together_direct = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)
    failures = sum(s != "COMPLETE" for s in states)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "repeats": args.repeats,
        "run_seconds_wes": wes,
        "run_seconds_cwltool": plain,
        "median_wes_s": statistics.median(wes),
        "median_cwltool_s": statistics.median(plain),
        "overhead_s": statistics.median(wes) - statistics.median(plain),
        "ratio": statistics.median(wes) / statistics.median(plain),
        "concurrent": {
            "runs": args.concurrent,
            "slots": slots,
            "seconds": together,
            "cwltool_seconds": together_direct,
            "ratio": together / together_direct,
            "states": {s: states.count(s) for s in set(states)},
            "failures": failures,
        },  # fmt: skip
    }
    table = Table(title="WES at one node (2 cores)")
    for column in ("measure", "genofed WES", "cwltool directly", "ratio"):
        table.add_column(column, justify="right")
    table.add_row("trivial CWL, submit → COMPLETE (median)", f"{report['median_wes_s']:.2f} s",
                  f"{report['median_cwltool_s']:.2f} s", f"{report['ratio']:.2f}×")  # fmt: skip
    table.add_row(f"{args.concurrent} runs at once, {slots} at a time", f"{together:.1f} s",
                  f"{together_direct:.1f} s", f"{together / together_direct:.2f}×")  # fmt: skip
    console.print(table)
    console.print(f"{args.concurrent} concurrent runs: {failures} did not complete")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        console.print(f"wrote {args.out}")
    if failures:
        raise SystemExit(f"{failures} of {args.concurrent} concurrent runs did not complete")


if __name__ == "__main__":
    main()
