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
      keys/aggregation.x25519         the node's key for secure sums (peers pin its public half)
      dac/dac.sqlite                  DAC applications and their history
      audit/audit.log                 the hash-chained audit log
      state/                          guard state (budgets, differencing, public alleles)
      state/jobs/<id>/                the spool of jobs that outlive a request

A version directory is written under a staging name and only becomes visible when
``catalog.json`` is replaced, so a failed ingest leaves the node exactly as it was and a
running server never sees a half-written dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
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
# Versions kept besides the live one at publication, so a server that read the catalogue
# just before and has not opened its reader yet still finds the version it was told of.
_KEEP_OLD_VERSIONS = 1


# A dataset id names a folder and, at the hub, half of ``<node>:<dataset>``: letters,
# digits, '-' and '_' only (no '/', '..', ':' or spaces), starting with a letter or digit.
DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_dataset_id(dataset_id: str) -> None:
    if not DATASET_ID.fullmatch(dataset_id):
        raise ConfigError(
            f"dataset id {dataset_id!r} is not allowed: use 1-64 letters, digits, '-' and '_', "
            "starting with a letter or digit (e.g. my-cohort_2024)"
        )


@dataclass(frozen=True)
class StoredVersion:
    """One version directory on disk, live or not (``genofed node datasets``)."""

    dataset_id: str
    version: str
    path: Path
    live: bool
    in_use: bool
    bytes: int


@dataclass(frozen=True)
class PruneResult:
    removed: list[StoredVersion]
    kept_in_use: list[StoredVersion]

    @property
    def freed_bytes(self) -> int:
        return sum(v.bytes for v in self.removed)


def hold_for_reading(database: Path) -> int:
    """Mark ``database``'s version as in use for as long as the returned descriptor is
    open (a shared ``flock``, released by the kernel when the reader's process ends), so
    that ``prune`` never removes a version a running server still reads. A raw descriptor,
    so that a reader dropped without ``close()`` releases it quietly when collected."""
    fd = os.open(database, os.O_RDONLY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


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
    def aggregation_key_path(self) -> Path:
        return self.root / "keys" / "aggregation.x25519"

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
        """The catalogue; ``ConfigError`` naming the file and what to do if it is damaged."""
        if not self.catalog_path.exists():
            return {"format": CATALOG_FORMAT, "datasets": {}}
        path = self.catalog_path
        advice = (
            "Restore it from a backup; or move it away and re-ingest each dataset "
            "(the versions under datasets/ are kept)"
        )
        try:
            catalog = json.loads(path.read_text(errors="replace"))
        except ValueError as exc:
            raise ConfigError(f"{path} is damaged (not JSON: {exc}). {advice}") from None
        if not isinstance(catalog, dict) or not isinstance(catalog.get("datasets"), dict):
            raise ConfigError(f"{path} is damaged (no 'datasets' object). {advice}")
        if catalog.get("format") != CATALOG_FORMAT:
            raise ConfigError(
                f"{path} has format {catalog.get('format')!r}; this genofed "
                f"reads format {CATALOG_FORMAT}. Re-create the node with this version."
            )
        for ds_id, entry in catalog["datasets"].items():
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("version"), str)
                and isinstance(entry.get("path"), str)
            ):
                raise ConfigError(
                    f"{path} is damaged (dataset {ds_id!r} has no version and path). {advice}"
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
        """A fresh directory to write a dataset version into; published only on success.
        Its name carries the ingest's process id, so folders that killed ingests left
        behind are recognised and removed by the next ingest."""
        check_dataset_id(dataset_id)
        self.check()
        parent = self.root / "datasets" / dataset_id
        parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_stages(parent)
        stage = parent / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        stage.mkdir()
        try:
            yield stage
            self._publish(dataset_id, stage)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty: another ingest is writing
                parent.rmdir()
            raise

    @contextmanager
    def _catalog_lock(self) -> Iterator[None]:
        """Several ingests at once: each reads, changes and writes the catalogue alone."""
        with (self.root / ".catalog.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _publish(self, dataset_id: str, stage: Path) -> None:
        version = time.strftime("v%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
        final = stage.parent / version
        with self._catalog_lock():
            catalog = self.read_catalog()  # damaged: ConfigError before anything moves
            stage.rename(final)
            catalog["datasets"][dataset_id] = {
                "version": version,
                "path": str(final.relative_to(self.root)),
            }
            self._write_catalog(catalog)
            self._prune(dataset_id, keep=version)

    def _write_catalog(self, catalog: dict) -> None:
        tmp = self.catalog_path.with_name(f".catalog.json.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(catalog, indent=2, sort_keys=True))
        os.replace(tmp, self.catalog_path)

    def _prune(self, dataset_id: str, keep: str) -> None:
        parent = self.root / "datasets" / dataset_id
        old = sorted(
            (p for p in parent.iterdir() if p.name.startswith("v") and p.name != keep),
            key=lambda p: p.name,
        )
        for path in old[: max(0, len(old) - _KEEP_OLD_VERSIONS)]:
            _remove_unless_read(path)

    def stored_versions(self) -> list[StoredVersion]:
        """Every version directory of every dataset, oldest first, with whether it is
        live, whether a running reader holds it, and its size."""
        live = {ds.dataset_id: ds.version for ds in self.datasets()}
        found: list[StoredVersion] = []
        datasets_dir = self.root / "datasets"
        if not datasets_dir.is_dir():
            return found
        for parent in sorted(p for p in datasets_dir.iterdir() if p.is_dir()):
            for path in sorted(p for p in parent.iterdir() if p.name.startswith("v")):
                found.append(
                    StoredVersion(
                        dataset_id=parent.name,
                        version=path.name,
                        path=path,
                        live=live.get(parent.name) == path.name,
                        in_use=_in_use(path),
                        bytes=_size(path),
                    )
                )
        return found

    def prune(self, dry_run: bool = False) -> PruneResult:
        """Remove every version that is not live and that no running reader holds (and
        staging folders of killed ingests). The live version is never touched."""
        removed: list[StoredVersion] = []
        kept: list[StoredVersion] = []
        self.check()
        with self._catalog_lock():  # no version becomes live (or old) meanwhile
            for version in self.stored_versions():
                if version.live:
                    continue
                if version.in_use:
                    kept.append(version)
                elif dry_run or _remove_unless_read(version.path):
                    removed.append(version)
                else:
                    kept.append(version)
            if not dry_run:
                for parent in (self.root / "datasets").glob("*/"):
                    _remove_abandoned_stages(parent)
        return PruneResult(removed, kept)


@contextmanager
def _unless_read(path: Path) -> Iterator[bool]:
    """Whether no reader holds the version at ``path``; while ``True`` is in hand an
    exclusive lock is held, so no reader can start on it meanwhile."""
    database = path / "dataset.duckdb"
    if not database.is_file():
        yield True
        return
    with database.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _in_use(path: Path) -> bool:
    with _unless_read(path) as free:
        return not free


def _remove_unless_read(path: Path) -> bool:
    """Remove a version directory unless a reader holds it; ``True`` if removed."""
    with _unless_read(path) as free:
        if free:
            shutil.rmtree(path, ignore_errors=True)
        return free


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


_ABANDONED_AFTER_S = 24 * 3600  # a staging folder without a process id (older releases)


def _remove_abandoned_stages(parent: Path) -> None:
    """Remove staging folders of ingests that are no longer running (killed)."""
    for stage in parent.glob(".staging-*"):
        pid_text = stage.name.removeprefix(".staging-").partition("-")[0]
        if pid_text.isdigit() and stage.name.count("-") >= 2:
            if _running(int(pid_text)):
                continue
        elif time.time() - stage.stat().st_mtime < _ABANDONED_AFTER_S:
            continue
        shutil.rmtree(stage, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
