"""Hub benchmark: federated Beacon latency with 3 and 20 nodes, beside one node asked directly.

Usage::

    .venv/bin/python bench/bench_hub.py [--nodes 3 20] [--requests 300]
                                        [--out bench/results/hub.json] [--quick]

Steps:

1. The Beacon benchmark's 50,000-variant node (``bench_beacon.build_node``, cached under
   ``bench/.cache/``), copied once per node, each served by its own ``genofed node serve``
   process on loopback (anonymous callers get counts, disclosure control off).
2. For each node count: a hub (``genofed hub serve``) over all of them. ``--requests``
   seeded sequence queries (``bench_beacon.draw_queries``) are asked, one keep-alive httpx
   client, sequentially, of node 1 directly and of the hub, in three interleaved rounds
   after a warm-up; p50/p99 of each (the client's own cost is in both). The hub's overhead
   is hub p50 - direct p50. Every hub answer is checked: all nodes ``ok`` and the count is
   the node's count times the number of nodes.
3. With 3 nodes, one node is then killed and the same queries are asked of the hub with
   a 1 s deadline: p50/p99, and how the dead node was reported (refused at first, then
   skipped by its circuit breaker).
4. Print the table and the goals (overhead <= 10 ms at p50 with 3 nodes; with a node dead,
   p99 <= deadline + 100 ms) and write everything as JSON.

All processes share this machine's cores: with 20 nodes, each hub request makes 20 node
processes work at once, so the 20-node overhead measures the machine as much as the hub.
``--quick`` uses 3 nodes and 60 requests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_beacon import (  # noqa: E402 - a sibling script, not a package
    build_node,
    draw_queries,
    free_port,
    genofed_exe,
    live_database,
    machine_info,
    start_server,
    stop_server,
)
from bench_data_connect import stats_ms  # noqa: E402 - a sibling script
from genofed.config import HubConfig, HubNode, save_hub_config  # noqa: E402

console = Console()
ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 1.0


def timed(client: httpx.Client, paths: list[str], headers: dict[str, str] | None = None):
    times, documents = [], []
    for path in paths:
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
        documents.append(response.json())
    return times, documents


def start_hub(nodes: list[str], work: Path) -> tuple[subprocess.Popen, str]:
    config = HubConfig(
        nodes=[HubNode(name=f"node{i + 1}", url=url) for i, url in enumerate(nodes)],
        deadline_s=5.0,
        health_interval_s=2.0,
    )
    path = work / f"hub-{len(nodes)}.yaml"
    save_hub_config(config, path)
    port = free_port()
    log = (work / f"hub-{len(nodes)}.log").open("wb")
    process = subprocess.Popen(
        [str(genofed_exe()), "hub", "serve", "--config", str(path), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the hub did not start; see {work}")


def measure(n_nodes: int, node: Path, paths: list[str], work: Path) -> dict[str, Any]:
    servers = []
    hub = None
    try:
        for i in range(n_nodes):
            copy = work / f"n{n_nodes}-{i}"
            shutil.copytree(node, copy)
            servers.append(start_server(copy, 1, work / "logs"))
        hub, hub_url = start_hub([s.base_url for s in servers], work)
        direct_times: list[float] = []
        hub_times: list[float] = []
        with (
            httpx.Client(base_url=servers[0].base_url, timeout=30) as direct,
            httpx.Client(base_url=hub_url, timeout=30) as federated,
        ):
            timed(direct, paths[:30])
            timed(federated, paths[:30])
            for _ in range(3):  # interleaved: both see the same machine
                times, expected = timed(direct, paths)
                direct_times += times
                times, merged = timed(federated, paths)
                hub_times += times
                for one, many in zip(expected, merged, strict=True):
                    outcomes = {n["status"] for n in many["info"]["nodes"]}
                    assert outcomes == {"ok"}, many["info"]["nodes"]
                    total = one["responseSummary"].get("numTotalResults", 0) * n_nodes
                    assert many["responseSummary"].get("numTotalResults", 0) == total
            result: dict[str, Any] = {
                "nodes": n_nodes,
                "requests": len(direct_times),
                "direct_ms": stats_ms(direct_times),
                "hub_ms": stats_ms(hub_times),
            }
            result["overhead_p50_ms"] = result["hub_ms"]["p50"] - result["direct_ms"]["p50"]
            if n_nodes == 3:
                stop_server(servers[-1])  # one node dies
                headers = {"Genofed-Deadline": str(DEADLINE_S)}
                times, merged = timed(federated, paths, headers)
                seen = [m["info"]["nodes"][-1]["status"] for m in merged]
                result["one_dead"] = {
                    "deadline_s": DEADLINE_S,
                    "hub_ms": stats_ms(times),
                    "dead_node_status": {s: seen.count(s) for s in sorted(set(seen))},
                }
        return result
    finally:
        if hub is not None:
            hub.kill()
            hub.wait()
        for server in servers:
            stop_server(server)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 20])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.requests = [3], 60
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("hub-quick.json" if args.quick else "hub.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    info = build_node(args.cache_dir, 50_000, 100, args.seed)
    node = Path(info["node"])
    queries = draw_queries(
        live_database(node), args.requests, seed=args.seed, window=10_000, absent_fraction=0.2
    )
    paths = [q.path for q in queries["sequence"]]
    results = []
    with tempfile.TemporaryDirectory(prefix="genofed-hub-bench-") as tmp:
        for n in args.nodes:
            console.print(f"[bold]{n} nodes[/] ...")
            results.append(measure(n, node, paths, Path(tmp)))

    table = Table(title="Federated Beacon (sequence queries, one client)")
    for column in ("nodes", "direct p50", "hub p50", "hub p99", "overhead p50 (ms)"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r["nodes"]),
            f"{r['direct_ms']['p50']:.2f}",
            f"{r['hub_ms']['p50']:.2f}",
            f"{r['hub_ms']['p99']:.2f}",
            f"{r['overhead_p50_ms']:.2f}",
        )
    console.print(table)
    goals: dict[str, Any] = {}
    three = next((r for r in results if r["nodes"] == 3), None)
    if three is not None:
        dead = three["one_dead"]
        goals = {
            "overhead_p50_ms_3_nodes": three["overhead_p50_ms"],
            "overhead_goal_met": three["overhead_p50_ms"] <= 10.0,
            "one_dead_p99_ms": dead["hub_ms"]["p99"],
            "one_dead_goal_met": dead["hub_ms"]["p99"] <= DEADLINE_S * 1000 + 100,
        }
        console.print(
            f"one node dead: hub p50 {dead['hub_ms']['p50']:.2f} ms, p99 "
            f"{dead['hub_ms']['p99']:.2f} ms (deadline {DEADLINE_S:g} s); the dead node was "
            f"reported {dead['dead_node_status']}"
        )
        console.print(
            f"goals: overhead {three['overhead_p50_ms']:.2f} ms <= 10 ms "
            f"({'met' if goals['overhead_goal_met'] else 'NOT met'}); with a node dead p99 "
            f"{dead['hub_ms']['p99']:.2f} ms <= {DEADLINE_S * 1000 + 100:.0f} ms "
            f"({'met' if goals['one_dead_goal_met'] else 'NOT met'})"
        )
    out = {
        "benchmark": "hub",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - started,
        "parameters": vars(args) | {"out": str(args.out), "cache_dir": str(args.cache_dir)},
        "node": info,
        "results": results,
        "goals": goals,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    console.print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
