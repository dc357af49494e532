"""The datasets a running node serves: the live version of each, its genes and the terms
and fields callers may filter on.

``catalog.json`` is looked at on every request and re-read when it changes, so an ingest
that finishes while the server runs is served from the next request on, without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from genofed._exceptions import ConfigError
from genofed.store.dataset_reader import DatasetReader
from genofed.store.documents import as_number
from genofed.store.filters import PERSON_ENTITIES, FilterContext, identifier_paths
from genofed.store.genes import load_gene_index
from genofed.store.node_dir import DatasetVersion, NodeDir
from genofed.store.ontology import OntologyIndex

log = logging.getLogger(__name__)

# Text fields with at most this many distinct values are offered as custom filters.
_CUSTOM_FILTER_MAX_VALUES = 12


@dataclass
class LiveDatasets:
    readers: dict[str, DatasetReader]
    genes: dict[str, dict[str, list[tuple[str, int, int]]]]
    catalog_mtime: float
    ontology: OntologyIndex
    # What could not be served, each naming the file and what to do (left out, not fatal)
    problems: list[str] = field(default_factory=list)
    _contexts: dict[frozenset[str], FilterContext] = field(default_factory=dict)

    def filter_context(self, dataset_ids: Iterable[str]) -> FilterContext:
        """Which terms and fields exist, in the datasets a caller may see (so a warning
        about an unknown term says nothing about datasets closed to them)."""
        key = frozenset(dataset_ids)
        context = self._contexts.get(key)
        if context is None:
            readers = [self.readers[i] for i in sorted(key)]
            context = self._contexts[key] = _filter_context(self.ontology, readers)
        return context


class DatasetCatalog:
    """The live datasets of one node directory, reloaded when ``catalog.json`` changes
    (readers of unchanged versions are kept)."""

    def __init__(self, node: NodeDir, ontology: OntologyIndex):
        self.node = node
        self.ontology = ontology
        self._lock = threading.Lock()
        self._live: LiveDatasets | None = None

    def live(self) -> LiveDatasets:
        mtime = self._catalog_mtime()
        live = self._live
        if live is not None and live.catalog_mtime == mtime:
            return live
        with self._lock:
            if self._live is None or self._live.catalog_mtime != mtime:
                self._live = self._load(mtime)
            return self._live

    def _catalog_mtime(self) -> float:
        try:
            return self.node.catalog_path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return 0.0

    def _load(self, mtime: float) -> LiveDatasets:
        """The datasets that can be served; a damaged catalogue or dataset is left out
        and reported (``problems``, the log), and the rest of the node keeps serving."""
        old = self._live.readers if self._live else {}
        readers: dict[str, DatasetReader] = {}
        problems: list[str] = []
        try:
            versions = self.node.datasets()
        except ConfigError as exc:
            versions, problems = [], [str(exc)]
        for version in versions:
            previous = old.get(version.dataset_id)
            if previous is not None and previous.version == version:
                readers[version.dataset_id] = previous
                continue
            try:
                readers[version.dataset_id] = _open(version)
            except ConfigError as exc:
                problems.append(str(exc))
        for problem in problems:
            log.error("not served: %s", problem)
        genes_dir = self.node.genes_dir
        genes = load_gene_index(genes_dir) if genes_dir.is_dir() else {}
        return LiveDatasets(readers, genes, mtime, self.ontology, problems=problems)


def _open(version: DatasetVersion) -> DatasetReader:
    """A reader of ``version``; ``ConfigError`` naming the file and what to do if its files
    are missing or damaged."""
    dataset = version.dataset_id
    again = f"re-ingest it: genofed node ingest NODE_DIR {dataset} ... (same arguments as before)"
    if not version.database.is_file():
        raise ConfigError(
            f"dataset {dataset}: {version.database} is missing (catalog.json names version "
            f"{version.version}); {again}"
        )
    try:
        return DatasetReader(version)
    except ConfigError as exc:
        raise ConfigError(f"dataset {dataset}: {exc}") from None
    except (duckdb.Error, OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"dataset {dataset}: {version.database} cannot be read ({type(exc).__name__}: "
            f"damaged or empty); {again}"
        ) from None


def _filter_context(ontology: OntologyIndex, readers: list[DatasetReader]) -> FilterContext:
    term_scopes: dict[str, set[str]] = {}
    path_scopes: dict[str, set[str]] = {}
    identifiers: set[str] = set()
    for reader in readers:
        for entity, term, _label in reader.term_index():
            term_scopes.setdefault(term, set()).add(entity)
        paths = reader.value_paths()
        for entity, path, _n, _numeric in paths:
            path_scopes.setdefault(path, set()).add(entity)
        entries = {e: len(reader.entry_ids(e)) for e in PERSON_ENTITIES}
        identifiers |= identifier_paths(paths, entries)
    return FilterContext(
        ontology, term_scopes, path_scopes, custom_terms(readers), frozenset(identifiers)
    )


def custom_terms(readers: Iterable[DatasetReader]) -> dict[str, tuple[str, str, set[str]]]:
    """``column:value`` custom filters: the operator's own categorical columns (``info.*``
    of individuals and biosamples, e.g. ``smoker:yes``), id -> (path, value, scopes).
    Numbers are left to alphanumeric filters."""
    custom: dict[str, tuple[str, str, set[str]]] = {}
    for reader in readers:
        for entity, path, value in reader.small_value_sets(_CUSTOM_FILTER_MAX_VALUES):
            if (
                path.startswith("info.")
                and entity not in ("dataset", "cohort")
                and as_number(value) is None
            ):
                key = f"{path.removeprefix('info.')}:{value}"
                custom.setdefault(key, (path, value, set()))[2].add(entity)
    return custom
