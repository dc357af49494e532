"""What a hub's requests share: its configuration, nodes, transport, token exchange,
release policy, saved cohorts and the audit heads it keeps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from genofed.config import HubConfig
from genofed.governance.release import ReleasePolicy
from genofed.hub.analyses import AnalysisStore
from genofed.hub.anchors import AnchorKeeper
from genofed.hub.cohorts import CohortStore
from genofed.hub.credentials import TokenExchange
from genofed.hub.nodes import Registry
from genofed.hub.transport import AiohttpTransport, Transport
from genofed.hub.workflows import WorkflowStore


@dataclass
class HubRuntime:
    config: HubConfig
    directory: Path  # hub.yaml's: relative paths in it are relative to this
    transport: Transport | None = None  # None: HTTP (opened by ``start``)
    registry: Registry = field(init=False)
    release: ReleasePolicy = field(init=False)
    cohorts: CohortStore = field(init=False)
    anchors: AnchorKeeper = field(init=False)
    exchange: TokenExchange = field(init=False)
    analyses: AnalysisStore = field(init=False)
    workflows: WorkflowStore = field(init=False)
    running: dict[str, asyncio.Task] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = Registry(self.config)
        # The hub has no data and keeps no guard state: it only makes merged counts safe.
        self.release = ReleasePolicy(self.config.disclosure, None)
        self.cohorts = CohortStore(self.directory / self.config.state_dir / "cohorts")
        self.analyses = AnalysisStore(self.directory / self.config.state_dir / "analyses")
        self.workflows = WorkflowStore(self.directory / self.config.state_dir / "workflows")
        self.anchors = AnchorKeeper(
            self.config, self.directory / self.config.state_dir / "audit-anchors"
        )

    def start(self) -> None:
        """Open the connections to the nodes (in the server's event loop)."""
        if self.transport is None:
            self.transport = AiohttpTransport(self.config, self.directory)
        self.exchange = TokenExchange(self.transport, self.config.token_exchange_url)
        self.analyses.fail_interrupted()  # a previous run's: it cannot go on as its caller

    async def close(self) -> None:
        for task in self.running.values():
            task.cancel()
        if self.transport is not None:
            await self.transport.close()
