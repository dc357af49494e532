"""The on-disk layout of a node and the atomic publication of dataset versions.

    NODE/
      node.yaml                       the operator's configuration
      catalog.json                    which version of each dataset is live (replaced atomically)
      datasets/<id>/<version>/        one immutable dataset version
          dataset.duckdb              variants, samples and entry tables
          genotypes.zarr/             the genotype matrix (VCF Zarr field names)
      genes/<assembly>.parquet        gene coordinates loaded by the operator
      ontologies/*.obo                extra ontologies loaded by the operator
      tables/                         tables registered for Data Connect
      keys/dac-signing.json           the key the node's DAC signs visas with
      dac/dac.sqlite                  DAC applications and their history
      audit/audit.log                 the hash-chained audit log
      state/                          guard state (budgets, differencing, public alleles)
      state/jobs/<id>/                the spool of jobs that outlive a request

A version directory is written under a staging name and only becomes visible when
``catalog.json`` is replaced, so a failed ingest leaves the node exactly as it was and a
running server never sees a half-written dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genofed._exceptions import ConfigError, NotFoundError
from genofed.config import NodeConfig, save_config

CATALOG_FORMAT = 1
# Versions kept besides the live one, so a server still reading the previous one survives.
_KEEP_OLD_VERSIONS = 1


@dataclass(frozen=True)
class DatasetVersion:
    dataset_id: str
    version: str
    path: Path

    @property
    def database(self) -> Path:
        return self.path / "dataset.duckdb"

    @property
    def genotypes(self) -> Path:
        return self.path / "genotypes.zarr"


class NodeDir:
    """A node directory: where its datasets live and which versions are live."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def create(cls, root: Path, config: NodeConfig) -> NodeDir:
        """Write ``node.yaml`` and the empty stores of a new node under ``root``."""
        node = cls(root)
        node.root.mkdir(parents=True, exist_ok=True)
        save_config(config, node.config_path)
        for sub in ("datasets", "genes", "ontologies"):
            (node.root / sub).mkdir(exist_ok=True)
        return node

    @property
    def config_path(self) -> Path:
        return self.root / "node.yaml"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.json"

    @property
    def genes_dir(self) -> Path:
        return self.root / "genes"

    @property
    def ontologies_dir(self) -> Path:
        return self.root / "ontologies"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def signing_key_path(self) -> Path:
        return self.root / "keys" / "dac-signing.json"

    @property
    def dac_path(self) -> Path:
        return self.root / "dac" / "dac.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.root / "audit" / "audit.log"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "state" / "jobs"

    def check(self) -> None:
        if not self.config_path.is_file():
            raise ConfigError(
                f"{self.root} is not a genofed node (no node.yaml); "
                f"create one with: genofed node init {self.root} --name NAME"
            )

    def read_catalog(self) -> dict:
        if not self.catalog_path.exists():
            return {"format": CATALOG_FORMAT, "datasets": {}}
        catalog = json.loads(self.catalog_path.read_text())
        if catalog.get("format") != CATALOG_FORMAT:
            raise ConfigError(
                f"{self.catalog_path} has format {catalog.get('format')!r}; this genofed "
                f"reads format {CATALOG_FORMAT}. Re-create the node with this version."
            )
        return catalog

    def datasets(self) -> list[DatasetVersion]:
        catalog = self.read_catalog()
        return [
            DatasetVersion(ds_id, entry["version"], self.root / entry["path"])
            for ds_id, entry in sorted(catalog["datasets"].items())
        ]

    def dataset(self, dataset_id: str) -> DatasetVersion:
        for ds in self.datasets():
            if ds.dataset_id == dataset_id:
                return ds
        raise NotFoundError(f"dataset {dataset_id!r} is not in node {self.root}")

    @contextmanager
    def staging(self, dataset_id: str) -> Iterator[Path]:
        """A fresh directory to write a dataset version into; published only on success."""
        self.check()
        parent = self.root / "datasets" / dataset_id
        parent.mkdir(parents=True, exist_ok=True)
        stage = parent / f".staging-{uuid.uuid4().hex[:12]}"
        stage.mkdir()
        try:
            yield stage
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            if not any(parent.iterdir()):
                parent.rmdir()
            raise
        self._publish(dataset_id, stage)

    def _publish(self, dataset_id: str, stage: Path) -> None:
        version = time.strftime("v%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
        final = stage.parent / version
        stage.rename(final)
        catalog = self.read_catalog()
        catalog["datasets"][dataset_id] = {
            "version": version,
            "path": str(final.relative_to(self.root)),
        }
        self._write_catalog(catalog)
        self._prune(dataset_id, keep=version)

    def _write_catalog(self, catalog: dict) -> None:
        tmp = self.catalog_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(catalog, indent=2, sort_keys=True))
        os.replace(tmp, self.catalog_path)

    def _prune(self, dataset_id: str, keep: str) -> None:
        parent = self.root / "datasets" / dataset_id
        old = sorted(
            (p for p in parent.iterdir() if p.name.startswith("v") and p.name != keep),
            key=lambda p: p.name,
        )
        for path in old[: max(0, len(old) - _KEEP_OLD_VERSIONS)]:
            shutil.rmtree(path, ignore_errors=True)
