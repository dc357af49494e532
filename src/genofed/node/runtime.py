"""A running node: its directory, configuration, governance, datasets, jobs and services.

One ``NodeRuntime`` per server worker; the routes reach it through ``node.deps``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from genofed._exceptions import GenofedError
from genofed.beacon.service import BeaconService
from genofed.config import NodeConfig, load_config
from genofed.dataconnect.service import DataConnectService
from genofed.governance.disclosure import Clock
from genofed.governance.gatekeeper import Gatekeeper
from genofed.jobs.runtime import JobRuntime
from genofed.node.analysis_tasks import AnalysisTasks
from genofed.node.wes_service import WesService
from genofed.store.live import DatasetCatalog, LiveDatasets
from genofed.store.node_dir import NodeDir
from genofed.store.ontology import OntologyIndex

log = logging.getLogger(__name__)


class NodeRuntime:
    def __init__(
        self, root: Path, ontology: OntologyIndex | None = None, *, clock: Clock = time.time
    ):
        self.node = NodeDir(root)
        self.node.check()
        self._clock = clock
        self._stamp = _stamp(self.node.config_path)
        self.config: NodeConfig = load_config(self.node.config_path)
        obo_files = [self.node.root / f for f in self.config.ontology_files]
        obo_files += sorted(self.node.ontologies_dir.glob("*.obo"))
        self.ontology = ontology or OntologyIndex(obo_files)
        self.gate = Gatekeeper(self.node, self.config, self.ontology.descendants, clock=clock)
        self.datasets = DatasetCatalog(self.node, self.ontology)
        self.jobs = JobRuntime(self.node.jobs_dir, clock=clock)
        self.beacon = BeaconService(self.datasets, self.gate)
        self.data_connect = DataConnectService(self.node, self.datasets, self.gate, self.jobs)
        self.analysis = AnalysisTasks(self)
        self.wes = WesService(self)
        self._lock = threading.Lock()
        self._retired: list[Gatekeeper] = []
        self.config_error: str | None = None  # why the latest node.yaml edit is not in force

    def refresh(self) -> None:
        """Put a changed node.yaml in force for the next request (trusted issuers, DUO
        codes, tiers, disclosure rules…): a new gate and services over the same datasets,
        jobs, ontology and audit log. An edit that does not load leaves the running
        configuration in force and says why in ``config_error`` (and /-/health). What is
        fixed when the server starts (host, port, workers, body size limit, ontology
        files) still needs a restart."""
        stamp = _stamp(self.node.config_path)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                config = load_config(self.node.config_path)
                gate = Gatekeeper(
                    self.node,
                    config,
                    self.ontology.descendants,
                    clock=self._clock,
                    audit=self.gate.audit,
                )
            except (GenofedError, OSError, ValueError) as err:
                self.config_error = f"{self.node.config_path} was not applied: {err}"
                log.error(self.config_error)
                return
            self._retired.append(self.gate)  # requests under way may still use it
            self.config, self.gate, self.config_error = config, gate, None
            self.beacon = BeaconService(self.datasets, gate)
            self.data_connect = DataConnectService(
                self.node, self.datasets, gate, self.jobs, self.data_connect.jobs
            )
            log.info("applied the changed %s", self.node.config_path)

    def live(self) -> LiveDatasets:
        return self.datasets.live()

    def close(self) -> None:
        self.jobs.close()
        self.gate.close()
        for gate in self._retired:
            gate.close()


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when node.yaml is written: its inode (replaced), mtime and size."""
    try:
        info = path.stat()
    except OSError:
        return (0, 0, 0)
    return (info.st_ino, info.st_mtime_ns, info.st_size)
