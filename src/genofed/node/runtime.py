"""A running node: its directory, configuration, governance, datasets, jobs and services.

One ``NodeRuntime`` per server worker; the routes reach it through ``node.deps``.
"""

from __future__ import annotations

import time
from pathlib import Path

from genofed.beacon.service import BeaconService
from genofed.config import NodeConfig, load_config
from genofed.dataconnect.service import DataConnectService
from genofed.governance.disclosure import Clock
from genofed.governance.gatekeeper import Gatekeeper
from genofed.jobs.runtime import JobRuntime
from genofed.store.live import DatasetCatalog, LiveDatasets
from genofed.store.node_dir import NodeDir
from genofed.store.ontology import OntologyIndex


class NodeRuntime:
    def __init__(
        self, root: Path, ontology: OntologyIndex | None = None, *, clock: Clock = time.time
    ):
        self.node = NodeDir(root)
        self.node.check()
        self.config: NodeConfig = load_config(self.node.config_path)
        obo_files = [self.node.root / f for f in self.config.ontology_files]
        obo_files += sorted(self.node.ontologies_dir.glob("*.obo"))
        self.ontology = ontology or OntologyIndex(obo_files)
        self.gate = Gatekeeper(self.node, self.config, self.ontology.descendants, clock=clock)
        self.datasets = DatasetCatalog(self.node, self.ontology)
        self.jobs = JobRuntime(self.node.jobs_dir, clock=clock)
        self.beacon = BeaconService(self.datasets, self.gate)
        self.data_connect = DataConnectService(self.node, self.datasets, self.gate, self.jobs)

    def live(self) -> LiveDatasets:
        return self.datasets.live()

    def close(self) -> None:
        self.jobs.close()
        self.gate.close()
