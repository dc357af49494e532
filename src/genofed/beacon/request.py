"""Parsing Beacon v2 requests (GET query strings and POST bodies) into one shape."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genofed._exceptions import QueryError
from genofed.config import Granularity
from genofed.store import reference
from genofed.store.filters import Filter, parse_filter
from genofed.store.variant_query import VariantQuery

IncludeResultsets = Literal["ALL", "HIT", "MISS", "NONE"]
_VARIANT_PARAMS = {
    "referenceName",
    "start",
    "end",
    "referenceBases",
    "alternateBases",
    "variantType",
    "assemblyId",
    "geneId",
    "aminoacidChange",
    "genomicAlleleShortForm",
    "variantMinLength",
    "variantMaxLength",
    "mateName",
}
_COMMON_PARAMS = {
    "filters",
    "skip",
    "limit",
    "requestedGranularity",
    "includeResultsetResponses",
    "testMode",
    "datasets",
    "datasetIds",
    "requestedSchema",
    "apiVersion",
}
_NUMBER_PARAMS = {"start", "end", "variantMinLength", "variantMaxLength"}
_TEXT_PARAMS = tuple(sorted(_VARIANT_PARAMS - _NUMBER_PARAMS))
DEFAULT_LIMIT = 10  # what a request without a limit is echoed as when nothing else is known
# Pagination values are echoed back and must fit the JSON integers clients read.
MAX_PAGE_VALUE = 2**31 - 1
_HGVS_SNV = re.compile(
    r"^(?:refseq:)?(NC_\d+(?:\.\d+)?|chr\w+|\w+):g\.(\d+)([ACGTN]+)>([ACGTN]+)$", re.IGNORECASE
)


class _Pagination(BaseModel):
    model_config = ConfigDict(extra="allow")
    skip: int = Field(0, ge=0, le=MAX_PAGE_VALUE)
    limit: int | None = Field(None, ge=0, le=MAX_PAGE_VALUE)


class _Query(BaseModel):
    model_config = ConfigDict(extra="allow")
    requestParameters: dict[str, Any] = Field(default_factory=dict)
    filters: list[Any] = Field(default_factory=list)
    includeResultsetResponses: IncludeResultsets = "HIT"
    pagination: _Pagination = Field(default_factory=_Pagination)
    requestedGranularity: Granularity = Granularity.BOOLEAN
    testMode: bool = False


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow")
    apiVersion: str | None = None
    requestedSchemas: list[dict[str, Any]] = Field(default_factory=list)


class RequestBody(BaseModel):
    """The POST body, as ``beaconRequestBody.json`` defines it (``meta`` may be omitted)."""

    model_config = ConfigDict(extra="allow")
    meta: _Meta = Field(default_factory=_Meta)
    query: _Query = Field(default_factory=_Query)


@dataclass
class BeaconRequest:
    """A request after parsing: what the handlers work with."""

    granularity: Granularity = Granularity.BOOLEAN
    granularity_given: bool = False  # asked for, not the default
    include: IncludeResultsets = "HIT"
    skip: int = 0
    limit: int | None = None  # None: the node's default_limit
    test_mode: bool = False
    filters: list[Filter] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    datasets: list[str] | None = None
    requested_schemas: list[dict[str, Any]] = field(default_factory=list)
    api_version: str = "v2.0.0"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "apiVersion": self.api_version,
            "requestedSchemas": self.requested_schemas,
            "pagination": {
                "skip": self.skip,
                "limit": DEFAULT_LIMIT if self.limit is None else self.limit,
            },
            "requestedGranularity": self.granularity,
            "includeResultsetResponses": self.include,
            "testMode": self.test_mode,
        }
        if self.filters:
            out["filters"] = [f.describe() for f in self.filters]
        if self.parameters:
            # The framework schema wants objects as values: echo the model's nested form.
            out["requestParameters"] = {"g_variant": self.parameters}
        return out


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"


def from_body(body: Any) -> BeaconRequest:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object (beaconRequestBody)")
    try:
        parsed = RequestBody.model_validate(body)
    except ValidationError as exc:
        raise QueryError(f"invalid request body: {_validation_message(exc)}") from exc
    params = dict(parsed.query.requestParameters)
    nested = params.pop("g_variant", None)
    if isinstance(nested, dict):
        params = {**nested, **params}
    elif nested is not None:
        raise QueryError(f"requestParameters.g_variant must be an object; got {nested!r}")
    datasets = params.pop("datasets", None) or params.pop("datasetIds", None)
    if isinstance(datasets, dict):  # the spec's {"datasets": {"datasetIds": [...]}} form
        datasets = datasets.get("datasetIds")
    if datasets is not None and not isinstance(datasets, str | list):
        raise QueryError(f"datasets must be a list of dataset ids; got {datasets!r}")
    return BeaconRequest(
        granularity=parsed.query.requestedGranularity,
        granularity_given="requestedGranularity" in parsed.query.model_fields_set,
        include=parsed.query.includeResultsetResponses,
        skip=parsed.query.pagination.skip,
        limit=parsed.query.pagination.limit,
        test_mode=parsed.query.testMode,
        filters=[parse_filter(f) for f in parsed.query.filters],
        parameters=params,
        datasets=_as_list(datasets) if datasets else None,
        requested_schemas=parsed.meta.requestedSchemas,
        api_version=parsed.meta.apiVersion or "v2.0.0",
    )


def from_post(body: Any, query: list[tuple[str, str]]) -> BeaconRequest:
    """A POST request: everything is in the JSON body. Query-string parameters next to it
    would be silently ignored, so they are refused."""
    if query:
        names = sorted({k for k, _ in query})
        raise QueryError(
            f"query-string parameters {names} are not read on a POST; put them in the JSON "
            "body (meta.requestedGranularity, query.requestParameters, query.filters, "
            "query.pagination) or send a GET"
        )
    return from_body(body)


def from_query_string(items: list[tuple[str, str]]) -> BeaconRequest:
    values: dict[str, str] = {}
    for key, value in items:
        if key not in _VARIANT_PARAMS and key not in _COMMON_PARAMS:
            raise QueryError(
                f"unknown query parameter {key!r}; see /beacon/v2/g_variants/endpoints or the "
                "Beacon v2 spec for the parameter names"
            )
        values[key] = f"{values[key]},{value}" if key in values else value
    request = BeaconRequest()
    try:
        if "requestedGranularity" in values:
            request.granularity = Granularity(
                _choice(
                    values["requestedGranularity"],
                    tuple(g.value for g in Granularity),
                    "requestedGranularity",
                )
            )
            request.granularity_given = True
        if "includeResultsetResponses" in values:
            request.include = _choice(
                values["includeResultsetResponses"].upper(),
                ("ALL", "HIT", "MISS", "NONE"),
                "includeResultsetResponses",
            )
        request.skip = _non_negative(values.get("skip", "0"), "skip")
        if "limit" in values:
            request.limit = _non_negative(values["limit"], "limit")
    except ValueError as exc:
        raise QueryError(str(exc)) from exc
    test_mode = values.get("testMode", "false").lower()
    if test_mode not in ("true", "false", "1", "0"):
        raise QueryError(f"testMode must be true or false; got {values['testMode']!r}")
    request.test_mode = test_mode in ("true", "1")
    if "filters" in values:
        request.filters = [parse_filter(f) for f in values["filters"].split(",") if f.strip()]
    datasets = values.get("datasets") or values.get("datasetIds")
    if datasets:
        request.datasets = _as_list(datasets)
    request.parameters = {k: v for k, v in values.items() if k in _VARIANT_PARAMS}
    return request


def _choice(value: str, options: tuple[str, ...], name: str) -> Any:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return value


def _non_negative(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number; got {value!r}") from None
    if not 0 <= number <= MAX_PAGE_VALUE:
        raise ValueError(f"{name} must be between 0 and {MAX_PAGE_VALUE}; got {number}")
    return number


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _int_list(value: Any, name: str) -> list[int]:
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        numbers = [int(str(v).strip()) for v in items if str(v).strip() != ""]
    except ValueError:
        raise QueryError(f"{name} must be whole numbers (0-based); got {value!r}") from None
    if len(numbers) > 2:
        raise QueryError(f"{name} takes one value, or two for a bracket query; got {value!r}")
    if any(n < 0 for n in numbers):
        raise QueryError(f"{name} must not be negative; got {value!r}")
    return numbers


def _optional_int(params: dict[str, Any], name: str) -> int | None:
    if params.get(name) in (None, ""):
        return None
    try:
        return int(params[name])
    except (TypeError, ValueError):
        raise QueryError(f"{name} must be a whole number; got {params[name]!r}") from None


@dataclass
class ParsedVariantQuery:
    query: VariantQuery
    assembly: str | None  # restrict to datasets of this assembly


def variant_query(params: dict[str, Any]) -> ParsedVariantQuery:
    """Check and normalise Beacon variant request parameters."""
    unknown = set(params) - _VARIANT_PARAMS
    if unknown:
        raise QueryError(f"unknown request parameter(s) {sorted(unknown)} for g_variants")
    for name in _TEXT_PARAMS:
        value = params.get(name)
        # A chromosome number is fine as a number (referenceName: 22); the rest is text.
        allowed = (str, int) if name == "referenceName" else (str,)
        if value is not None and (not isinstance(value, allowed) or isinstance(value, bool)):
            raise QueryError(f"{name} must be a string; got {value!r}")
    query = VariantQuery()
    assembly = None
    if params.get("assemblyId"):
        assembly = reference.canonical_assembly(str(params["assemblyId"]))
        if assembly is None:
            raise QueryError(
                f"unknown assemblyId {params['assemblyId']!r}; this beacon "
                f"serves {', '.join(reference.ASSEMBLIES)}"
            )
    if params.get("referenceName"):
        contig = reference.parse_contig(str(params["referenceName"]))
        if contig is None:
            raise QueryError(
                f"unknown referenceName {params['referenceName']!r}; use 1-22, X, "
                "Y, MT (with or without 'chr') or a RefSeq accession"
            )
        if contig.assembly and assembly and contig.assembly != assembly:
            raise QueryError(
                f"referenceName {params['referenceName']!r} is a "
                f"{contig.assembly} accession but assemblyId is {assembly}"
            )
        assembly = assembly or contig.assembly
        query.chrom = contig.chrom
    query.start = _int_list(params.get("start", []), "start")
    query.end = _int_list(params.get("end", []), "end")
    if (query.start or query.end) and query.chrom is None:
        raise QueryError("start/end need a referenceName")
    if len(query.start) == 2 and query.start[0] > query.start[1]:
        raise QueryError(f"bracket start values are reversed: {query.start}")
    if len(query.end) == 2 and query.end[0] > query.end[1]:
        raise QueryError(f"bracket end values are reversed: {query.end}")
    if len(query.start) == 1 and len(query.end) == 1 and query.end[0] <= query.start[0]:
        raise QueryError(f"end ({query.end[0]}) must be greater than start ({query.start[0]})")
    if len(query.start) != len(query.end) and query.end:
        raise QueryError(
            "give one start and one end (range), two of each (bracket), or a start alone "
            f"(sequence); got start={query.start} end={query.end}"
        )
    for name in ("referenceBases", "alternateBases"):
        bases = params.get(name)
        if bases is not None and not re.fullmatch(
            r"[ACGTUNRYSWKMBDHVacgtunryswkmbdhv.*\-]*", str(bases)
        ):
            raise QueryError(f"{name} must be IUPAC nucleotide codes; got {bases!r}")
    query.reference_bases = params.get("referenceBases") or None
    alternate = params.get("alternateBases")
    query.alternate_bases = None if alternate is None else str(alternate)
    query.variant_type = params.get("variantType") or None
    query.min_length = _optional_int(params, "variantMinLength")
    query.max_length = _optional_int(params, "variantMaxLength")
    for name, value in (
        ("variantMinLength", query.min_length),
        ("variantMaxLength", query.max_length),
    ):
        if value is not None and value < 0:
            raise QueryError(f"{name} must not be negative; got {value}")
    query.gene_id = params.get("geneId") or None
    query.aminoacid_change = params.get("aminoacidChange") or None
    short_form = params.get("genomicAlleleShortForm")
    if short_form:
        implied = _apply_short_form(str(short_form), query)
        if implied and assembly and implied != assembly:
            raise QueryError(
                f"genomicAlleleShortForm {short_form!r} names a {implied} "
                f"sequence but the query is for {assembly}"
            )
        assembly = assembly or implied
    if (
        query.chrom is None
        and (query.reference_bases or query.alternate_bases)
        and not (query.gene_id or query.allele_short_form)
    ):
        raise QueryError("referenceBases/alternateBases need a referenceName and start")
    return ParsedVariantQuery(query, assembly)


def _apply_short_form(text: str, query: VariantQuery) -> str | None:
    """A genomic HGVS SNV becomes coordinates; anything else matches annotation HGVS.

    Returns the assembly a versioned RefSeq accession implies, if any.
    """
    match = _HGVS_SNV.match(text)
    if match:
        contig = reference.parse_contig(match.group(1))
        if contig is not None:
            query.chrom = contig.chrom
            position = int(match.group(2))
            query.start = [position - 1]
            query.reference_bases = match.group(3).upper()
            query.alternate_bases = match.group(4).upper()
            return contig.assembly
    query.allele_short_form = text
    return None
