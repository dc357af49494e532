"""A federation of real processes for tests: a development broker, nodes and hubs, each
``genofed ... serve`` on a free loopback port (started and stopped by ``federation()``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from genofed import devbroker as broker
from genofed.config import (
    HubConfig,
    HubNode,
    NodeConfig,
    TrustedIssuer,
    default_config,
    save_config,
    save_hub_config,
)
from genofed.governance import keys
from genofed.simulate import SimulatedCohort, simulate_cohort
from genofed.store.node_dir import NodeDir
from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
from tests.live_server import GENOFED, free_port, start_node_server

ISSUER = "https://broker.genofed.test"


@dataclass
class Federation:
    root: Path
    key: keys.SigningKey
    broker_url: str
    nodes: dict[str, str] = field(default_factory=dict)  # name -> base URL
    cohorts: dict[str, SimulatedCohort] = field(default_factory=dict)  # name -> its data
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def audience(self, name: str) -> str:
        return f"urn:genofed:node:{name}"

    def hub_node(self, name: str, url: str | None = None) -> HubNode:
        return HubNode(name=name, url=url or self.nodes[name], audience=self.audience(name))

    def access_token(self, sub: str = "researcher-1", *, visas: list[str] | None = None) -> str:
        """An access token of the broker's, for a bona fide researcher by default."""
        given = broker.bona_fide_visas(self.key, sub) if visas is None else visas
        return broker.access_token(self.key, sub, given)

    def passport(self, sub: str = "researcher-1", **kwargs: Any) -> str:
        return broker.passport(self.key, sub, broker.bona_fide_visas(self.key, sub), **kwargs)

    def add_node(
        self,
        name: str,
        *,
        seed: int,
        samples: int,
        sites: int = 120,
        configure: Callable[[NodeConfig], None] | None = None,
        tier: str = "public",
    ) -> str:
        """A governed node (``build_node``), served at the URL returned."""
        root = self.build_node(
            name, seed=seed, samples=samples, sites=sites, configure=configure, tier=tier
        )
        process, base = start_node_server(root)
        self.processes[name] = process
        self.nodes[name] = base
        return base

    def build_node(
        self,
        name: str,
        *,
        seed: int,
        samples: int,
        sites: int = 120,
        configure: Callable[[NodeConfig], None] | None = None,
        tier: str = "public",
    ) -> Path:
        """A governed node of ``samples`` simulated people (ids ``<NAME>00000``...) in
        dataset ``<name>-cohort``, trusting the broker; ``configure`` edits its config."""
        node = NodeDir.create(self.root / name, default_config(name))
        cohort = simulate_cohort(
            self.root / f"{name}-data",
            n_samples=samples,
            n_sites=sites,
            seed=seed,
            prefix=name.upper(),
        )
        config = default_config(name)
        trusted = TrustedIssuer(issuer=ISSUER, jwks=self.key.jwks())
        config.trust.brokers = [trusted]
        config.trust.visa_issuers = [trusted]
        config.trust.audience = self.audience(name)
        if configure is not None:
            configure(config)
        save_config(config, node.config_path)
        ingest_vcf(
            node,
            f"{name}-cohort",
            cohort.vcf,
            assembly="GRCh38",
            individuals=cohort.clinical,
            settings=DatasetSettings(granularity="record", tier=tier),  # type: ignore[arg-type]
        )
        self.cohorts[name] = cohort
        return node.root

    def start_hub(self, nodes: list[HubNode] | None = None, **settings: Any) -> str:
        """A hub over ``nodes`` (default: every node added), served at the URL returned."""
        config = HubConfig(
            nodes=nodes if nodes is not None else [self.hub_node(n) for n in self.nodes],
            token_exchange_url=f"{self.broker_url}/token",
            health_interval_s=1,
            **settings,
        )
        path = self.root / f"hub-{len(self.processes)}.yaml"
        save_hub_config(config, path)
        port = free_port()
        process = subprocess.Popen(
            [GENOFED, "hub", "serve", "--config", str(path), "--port", str(port)],
            stdout=subprocess.DEVNULL,
        )
        self.processes[path.name] = process
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/-/health", process)
        return url

    def start_stub(self, mode: str, upstream: str | None = None) -> tuple[str, Path]:
        """A misbehaving peer (``tests/stub_peer.py``) and the log of what it received;
        ``lagging`` passes requests on to the node at ``upstream``."""
        port = free_port()
        log = self.root / f"{mode}-{port}.jsonl"
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.stub_peer", mode, str(port), str(log)]
            + ([upstream] if upstream else []),
            cwd=Path(__file__).parent.parent,
        )
        self.processes[f"{mode}-{port}"] = process
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/-/health", process)
        return url, log


def wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError(f"{url} did not come up")
        time.sleep(0.1)


@contextmanager
def federation(root: Path) -> Iterator[Federation]:
    """A broker serving token exchange; add nodes and hubs; everything stops at the end."""
    key = keys.create_key(root / "broker.json", ISSUER)
    port = free_port()
    process = subprocess.Popen(
        [GENOFED, "passport", "serve", str(root / "broker.json"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    fed = Federation(root, key, f"http://127.0.0.1:{port}")
    fed.processes["broker"] = process
    try:
        wait_for(f"{fed.broker_url}/.well-known/jwks.json", process)
        yield fed
    finally:
        for running in fed.processes.values():
            running.kill()
            running.wait()


def analyse(hub: str, token: str, body: dict[str, Any], *, wait_s: float = 120) -> dict[str, Any]:
    """An analysis started at the hub (``POST /hub/analyses``) and followed to its end."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=hub, headers=headers, timeout=60) as client:
        started = client.post("/hub/analyses", json=body)
        assert started.status_code == 202, started.text
        job = started.json()
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            job = client.get(f"/hub/analyses/{job['id']}").json()
            if job["state"] not in ("queued", "running"):
                return job
            time.sleep(0.1)
    raise AssertionError(f"the analysis did not finish: {job}")


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {n["node"]: n["status"] for n in document["info"]["nodes"]}
