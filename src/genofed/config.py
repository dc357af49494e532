"""Typed configuration of a node (``node.yaml``)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from genofed._exceptions import ConfigError

CONFIG_FORMAT = 1  # the `format` of node.yaml and hub.yaml this genofed reads and writes


class Granularity(StrEnum):
    """How much of an answer a caller gets, in order: whether anything matches
    (``boolean``) < how many (``count``) < which ones (``record``)."""

    BOOLEAN = "boolean"
    COUNT = "count"
    RECORD = "record"

    @property
    def rank(self) -> int:
        return _GRANULARITY_RANK[self.value]

    def __lt__(self, other: object) -> bool:
        return self.rank < Granularity(other).rank

    def __le__(self, other: object) -> bool:
        return self.rank <= Granularity(other).rank

    def __gt__(self, other: object) -> bool:
        return self.rank > Granularity(other).rank

    def __ge__(self, other: object) -> bool:
        return self.rank >= Granularity(other).rank


_GRANULARITY_RANK = {"boolean": 0, "count": 1, "record": 2}
Tier = Literal["public", "registered", "controlled"]
# The bona fide researcher policy of ResearcherStatus / AcceptedTermsAndPolicies visas.
BONA_FIDE = "https://doi.org/10.1038/s41431-018-0219-y"


class Organization(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    id: str = Field(description="Unique id of the institution running the node")
    name: str = Field(description="Human-readable name of the institution")
    description: str | None = Field(None, description="What the institution is, in a sentence")
    contact_url: str | None = Field(None, description="mailto: or web address of the operator")
    welcome_url: str | None = Field(None, description="The institution's web page")


class TrustedIssuer(BaseModel):
    """An issuer whose signed tokens the node accepts. Keys come from exactly one of
    ``jwks_url``, ``jwks`` (pinned JWK Set) or ``jwks_file`` (relative to the node dir)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    issuer: str = Field(description="The exact `iss` claim (compared as a string)")
    jwks_url: str | None = Field(None, description="Where the issuer publishes its JWK Set")
    jwks: dict | None = Field(None, description="Pinned public keys, a JWK Set")
    jwks_file: str | None = Field(None, description="Pinned public keys in a file")
    jku_allowed: list[str] = Field(
        default_factory=list, description="`jku` header URLs accepted for this issuer"
    )
    userinfo_url: str | None = Field(
        None, description="Broker only: resolves an access token to a Passport (userinfo)"
    )
    token_exchange_url: str | None = Field(
        None, description="Broker only: RFC 8693 token exchange of an access token for a Passport"
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedIssuer:
        given = [k for k in ("jwks_url", "jwks", "jwks_file") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"issuer {self.issuer}: give exactly one of jwks_url, jwks, jwks_file "
                f"(got {given or 'none'})"
            )
        return self


class Trust(BaseModel):
    """Whom the node believes: Passport brokers and visa issuers (none by default)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    audience: str | None = Field(
        None, description="If set, a Passport with an `aud` claim must name this audience"
    )
    leeway_seconds: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp/iat")
    brokers: list[TrustedIssuer] = Field(
        default_factory=list, description="Sign Passports and resolve access tokens"
    )
    visa_issuers: list[TrustedIssuer] = Field(default_factory=list, description="Sign visas")
    proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies in front of the node whose X-Forwarded-For "
        "and X-Forwarded-Proto it believes (none by default: the client address the audit log "
        "records is the connection's; headers from anyone else are ignored)",
    )


class TierGrants(BaseModel):
    """The most each kind of caller gets from a dataset of one tier (null: nothing)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    anonymous: Granularity | None = Field(None, description="Callers without a Passport")
    registered: Granularity | None = Field(
        None, description="Registered (bona fide) researchers: ResearcherStatus + terms visas"
    )
    controlled: Granularity | None = Field(
        Granularity.RECORD,
        description="Holders of a ControlledAccessGrants visa for the dataset (its DAC's)",
    )


def _default_tiers() -> dict[str, TierGrants]:
    return {
        "public": TierGrants(
            anonymous=Granularity.BOOLEAN,
            registered=Granularity.COUNT,
            controlled=Granularity.RECORD,
        ),
        "registered": TierGrants(registered=Granularity.COUNT, controlled=Granularity.RECORD),
        "controlled": TierGrants(controlled=Granularity.RECORD),
    }


class DatasetPolicy(BaseModel):
    """The operator's word on one dataset, overriding what was set at ingest."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    tier: Tier | None = Field(None, description="Overrides the tier given at ingest")
    duo: list[str] = Field(
        default_factory=list, description="DUO codes, e.g. DUO:0000007 (DS) with disease terms"
    )
    duo_diseases: list[str] = Field(
        default_factory=list, description="Disease terms of a DS (DUO:0000007) restriction"
    )
    grant_values: list[str] = Field(
        default_factory=list,
        description="ControlledAccessGrants visa values that open this dataset "
        "(the node's own DAC grants are always accepted)",
    )
    analysis: Literal["granted", "registered"] = Field(
        "granted",
        description="Who may run the vetted analyses (/analysis/v1) on this dataset: holders "
        "of a grant for it, or also registered researchers (as DataSHIELD lets them)",
    )


class Disclosure(BaseModel):
    """What may leave the node (on by default)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    min_count: int = Field(5, ge=1, description="Counts 1..min_count-1 are never exact")
    round_to: int = Field(5, ge=1, description="Counts at or above min_count are rounded to this")
    public_min_allele_count: int = Field(
        5, ge=0, description="Anonymous allele queries do not see alleles rarer than this AC"
    )
    public_min_allele_frequency: float = Field(
        0.0, ge=0, le=1, description="... nor alleles below this AF"
    )
    public_individual_guard: bool = Field(
        True,
        description="No single carrier may decide an anonymous allele answer: one who would "
        "is left out of the dataset's anonymous allele answers for the rest of the window",
    )
    query_budget: int | None = Field(
        1000, ge=1, description="Queries per caller per day (anonymous: per client address)"
    )
    public_guard_max_excluded: int = Field(
        25,
        ge=0,
        description="At most this many people are left out of a dataset's anonymous allele "
        "answers per window; beyond, the floor rises to public_min_allele_count + 2 + 2 x "
        "this (where no one carrier can matter) until the window ends",
    )
    public_guard_window_days: int = Field(
        1,
        ge=1,
        description="How long the public allele guard remembers whom it left out (UTC days)",
    )
    differencing_k: int = Field(
        5, ge=1, description="Two count queries may not differ by fewer than k individuals"
    )

    @classmethod
    def off(cls) -> Disclosure:
        """No disclosure control at all: exact counts, every allele, no budget, no guards.
        For tests of other features and for benchmarks' baselines, never a default."""
        return cls(
            min_count=1,
            round_to=1,
            public_min_allele_count=0,
            public_individual_guard=False,
            query_budget=None,
            differencing_k=1,
        )


class AnalysisRules(BaseModel):
    """What a federated analysis must satisfy at this node before anything leaves it
    (DataSHIELD's names and defaults). A failed rule withholds the whole payload."""

    # written to node.yaml under DataSHIELD's names (nfilter.tab); read under either
    model_config = ConfigDict(
        extra="forbid",
        defer_build=True,
        validate_assignment=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
    nfilter_tab: int = Field(
        3,
        ge=1,
        alias="nfilter.tab",
        description="Smallest non-zero cell of a table, and of "
        "each outcome level of a binomial model",
    )
    nfilter_glm: float = Field(
        0.33,
        gt=0,
        le=1,
        alias="nfilter.glm",
        description="Most parameters per observation in a model",
    )
    nfilter_subset: int = Field(
        3, ge=1, alias="nfilter.subset", description="Smallest subset (cohort) analysed"
    )
    min_n: int = Field(10, ge=1, description="Fewest complete observations at this node")
    min_mac: int = Field(
        3,
        ge=1,
        description="A variant whose minor allele count here is 1 .. min_mac-1 is left out of "
        "the whole association analysis",
    )
    max_training_rounds: int = Field(
        1000,
        ge=0,
        description="Most federated-learning rounds a dataset takes part in, every job's "
        "together (each round releases an update computed from its rows)",
    )


class Compute(BaseModel):
    """Where this node's genotype work runs (dask over the genotype Zarr)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    dask_scheduler: str | None = Field(
        None,
        pattern=r"^(tcp|tls|inproc|ucx)://\S+$",
        description="The address of a dask.distributed scheduler (tcp://host:8786) to run "
        "genotype work on a cluster; null: this node's own threads",
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="Threads for genotype work here (null: one per core)"
    )


class Analysis(BaseModel):
    """Federated analysis at this node: its rules, and the federation it sums with."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    rules: AnalysisRules = Field(
        default_factory=AnalysisRules, description="What an analysis must satisfy here"
    )
    peers: dict[str, str] = Field(
        default_factory=dict,
        description="The federation's nodes this node sums with: name -> X25519 public key "
        "(base64url), pinned with `genofed node peer add` after checking its fingerprint with "
        "the peer's operator; a secure sum naming anyone else is refused",
    )
    min_participants: int = Field(
        3, ge=2, description="Fewest nodes in a secure sum this node takes part in"
    )
    budget_per_day: int | None = Field(
        100,
        ge=1,
        description="Analyses one caller may run on one dataset per day (all the rounds of one "
        "model or GWAS count once; a step sent without its analysis id counts by itself); "
        "null: no limit",
    )

    @field_validator("peers")
    @classmethod
    def _keys(cls, peers: dict[str, str]) -> dict[str, str]:
        for name, key in peers.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]{43}", key):
                raise ValueError(f"the aggregation key of {name} is not 32 bytes of base64url")
        return peers


class DataConnect(BaseModel):
    """Limits of GA4GH Data Connect SQL at this node."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    page_rows: int = Field(10_000, ge=1, le=1_000_000, description="Rows per result page")
    statement_timeout_s: float = Field(
        60, gt=0, description="A query still running after this is interrupted"
    )
    max_rows: int = Field(
        10_000_000, ge=1, description="A result is cut after this many rows (with an error entry)"
    )
    page_wait_s: float = Field(
        2.0,
        ge=0,
        # the old name, from nodes made before later pages waited too
        validation_alias=AliasChoices("page_wait_s", "first_page_wait_s"),
        description="How long a request waits for its page of a running query before "
        "answering with an empty page to poll",
    )
    memory_limit: str = Field("2GB", description="DuckDB memory_limit for queries")
    threads: int = Field(
        1,
        ge=1,
        description="DuckDB threads per query: one keeps point queries fast (a third faster "
        "than two) while several queries share the cores; raise it for heavy analytics",
    )
    concurrent_queries: int = Field(
        16, ge=1, description="Queries running at once per server worker (more wait their turn)"
    )
    result_ttl_s: float = Field(
        3600, gt=0, description="Unread result pages are deleted after this long"
    )


class DacReviewer(BaseModel):
    """A person the node's DAC trusts to decide applications."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    sub: str = Field(min_length=1, description="The reviewer's Passport `sub`")
    iss: str = Field(min_length=1, description="The issuer of the reviewer's Passport (`iss`)")

    @model_validator(mode="before")
    @classmethod
    def _not_a_bare_sub(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                f"a reviewer is a Passport's sub and iss, not {value!r} alone: write "
                f"{{sub: {value}, iss: <the issuer of their Passports>}}"
            )
        return value

    def is_(self, sub: str | None, iss: str | None) -> bool:
        return self.sub == sub and self.iss == iss


class AirlockRules(BaseModel):
    """The automatic checks of a workflow's tabular outputs, under ACRO's names and with
    its defaults (``wes.airlock`` says what each checks)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    safe_threshold: int = Field(10, ge=1, description="Smallest non-zero count cell")
    safe_dof_threshold: int = Field(10, ge=1, description="Fewest residual degrees of freedom")
    safe_nk_n: int = Field(2, ge=1, le=2, description="N of the N-K dominance rule")
    safe_nk_k: float = Field(0.9, gt=0, le=1, description="K of the N-K dominance rule")
    safe_pratio_p: float = Field(0.1, gt=0, le=1, description="P of the p% dominance rule")
    check_missing_values: bool = Field(False, description="Hold tables with missing cells")
    zeros_are_disclosive: bool = Field(True, description="Hold tables with a zero count")
    count_columns: str = Field(
        r"n|count|counts|ac|an|cases|controls|n_\w+|\w+_n|\w+_count|\w+_counts",
        description="Columns whose integer cells are counts (a regular expression, matched "
        "whole, case-insensitive)",
    )

    @field_validator("count_columns")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class ApprovedWorkflow(BaseModel):
    """A workflow the operator read and approved (``genofed node workflow approve``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    name: str = Field(description="The file's name when it was approved")
    approved: str = Field(description="When (ISO 8601)")
    note: str | None = Field(None, description="What the operator said of it")


class Workflows(BaseModel):
    """GA4GH WES at this node: who may run which workflows, in what limits, and the airlock
    their outputs wait in."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    approved: dict[str, ApprovedWorkflow] = Field(
        default_factory=dict,
        description="The workflows that may run here, by the sha256 of their file (every "
        "attached workflow file must be one of them); none by default",
    )
    who: Literal["granted", "registered"] = Field(
        "granted",
        description="Who may run workflows on a dataset: holders of a grant for it, or also "
        "registered researchers",
    )
    memory_mb: int = Field(4096, ge=256, description="Address space of a run (RLIMIT_AS)")
    cpu_s: int = Field(3600, ge=1, description="CPU seconds of a run (RLIMIT_CPU)")
    wall_s: int = Field(3600, ge=1, description="Wall time of a run, then it is killed")
    cores: int = Field(1, ge=1, le=1024, description="Cores a run may use")
    file_mb: int = Field(1024, ge=1, description="Largest file a run may write")
    processes: int = Field(
        512,
        ge=16,
        description="Processes of the node's user at once (RLIMIT_NPROC; not "
        "applied by the kernel when the node runs as root)",
    )
    concurrent_runs: int = Field(4, ge=1, le=256, description="Runs at once; the rest queue")
    custodians: list[DacReviewer] = Field(
        default_factory=list,
        description="Who may release or reject outputs through the API (a Passport's sub "
        "and iss); the operator always can, with `genofed airlock`",
    )
    airlock: AirlockRules = Field(
        default_factory=AirlockRules, description="The automatic checks of outputs"
    )


def _check_format(value: int, what: str) -> int:
    if value != CONFIG_FORMAT:
        raise ValueError(
            f"this {what} has format {value}; this genofed reads format {CONFIG_FORMAT}. "
            "Use the genofed release that wrote it, or write the file anew"
        )
    return value


class NodeConfig(BaseModel):
    """Settings of one node; written by ``genofed node init``, edited by the operator."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    format: int = Field(
        CONFIG_FORMAT, description="Version of this file's layout (a file without it is 1)"
    )
    name: str = Field(description="Short name of the node, used in ids and the portal")
    beacon_id: str = Field(description="Reverse-domain id of the Beacon, e.g. org.example.node")
    description: str = Field("A genofed node", description="Shown in Beacon info")
    version: str = Field("v0.1.0", description="The version of this Beacon's content")
    environment: Literal["prod", "test", "dev", "staging"] = Field(
        "dev", description="Beacon info's environment"
    )
    organization: Organization = Field(description="The institution that runs the node")
    ontology_files: list[str] = Field(
        default_factory=list,
        description="Extra OBO files (paths relative to the node directory) for ontology filters",
    )
    default_limit: int = Field(10, ge=1, description="Records per page when the request sets none")
    max_limit: int = Field(1000, ge=1, description="Largest page a caller may ask for")
    public_url: str | None = Field(
        None, description="Where callers reach this node; also the `iss` of visas its DAC signs"
    )
    trust: Trust = Field(
        default_factory=Trust, description="Whom the node believes (none by default)"
    )
    tiers: dict[Tier, TierGrants] = Field(
        default_factory=_default_tiers,
        description="The most each kind of caller gets from a dataset of each tier",
    )
    datasets: dict[str, DatasetPolicy] = Field(
        default_factory=dict, description="Per-dataset tier, DUO codes and grant values"
    )
    disclosure: Disclosure = Field(
        default_factory=Disclosure, description="What may leave the node (on by default)"
    )
    analysis: Analysis = Field(
        default_factory=Analysis, description="Federated analysis: rules and peers"
    )
    compute: Compute = Field(
        default_factory=Compute,
        description="Genotype work: on this node's threads, or on a dask.distributed cluster",
    )
    dac_reviewers: list[DacReviewer] = Field(
        default_factory=list,
        description="Who may decide DAC applications through the API: each a Passport's "
        "`sub` and `iss` (the same `sub` at another issuer is another person)",
    )
    dac_grant_days: float = Field(365, gt=0, description="Lifetime of the visas the DAC signs")
    workflows: Workflows = Field(
        default_factory=Workflows,
        description="GA4GH WES: approved workflows, their limits, and the output airlock",
    )
    data_connect: DataConnect = Field(
        default_factory=DataConnect, description="Limits of Data Connect SQL"
    )
    max_request_bytes: int = Field(
        1_000_000, ge=1024, description="A request body larger than this is refused (413)"
    )
    max_filters: int = Field(
        100, ge=1, description="Filters one Beacon request may carry (each costs a look-up)"
    )

    @field_validator("format")
    @classmethod
    def _format(cls, value: int) -> int:
        return _check_format(value, "node.yaml")

    @property
    def issuer(self) -> str:
        """The ``iss`` of visas signed by this node's DAC."""
        return self.public_url or f"urn:genofed:node:{self.beacon_id}"


def default_config(name: str) -> NodeConfig:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "node"
    return NodeConfig(
        name=name,
        beacon_id=f"org.genofed.{slug}",
        description=f"genofed node {name}",
        organization=Organization(id=slug, name=name),
    )


_Model = TypeVar("_Model", bound=BaseModel)


def load_config(path: Path) -> NodeConfig:
    return _load(path, NodeConfig, "run `genofed node init`")


def _load(path: Path, model: type[_Model], hint: str) -> _Model:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist; {hint}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def save_config(config: NodeConfig, path: Path) -> None:
    # Nulls are written too: for budgets and tier grants, null means "none", not "default".
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


# -- the hub ---------------------------------------------------------------------------


class HubNode(BaseModel):
    """One node the hub asks."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Short name (lower case, digits, -): prefixes the node's datasets and tables",
    )
    url: str = Field(
        pattern=r"^https?://", description="Base URL of the node, e.g. https://node.example.org"
    )
    audience: str | None = Field(
        None,
        description="The `aud` of the Passports the hub obtains for this node (the node's "
        "trust.audience); default: its URL",
    )
    ca_file: str | None = Field(
        None,
        description="PEM file of the CA that signed this node's TLS certificate (relative to "
        "hub.yaml): only it is trusted for this node. Default: the system's CAs",
    )

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    @property
    def passport_audience(self) -> str:
        return self.audience or self.base


class HubConfig(BaseModel):
    """Settings of a hub: the nodes it federates and how it asks them (``hub.yaml``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=True)
    format: int = Field(
        CONFIG_FORMAT, description="Version of this file's layout (a file without it is 1)"
    )
    name: str = Field("genofed hub", description="Shown in the portal and in Beacon info")
    beacon_id: str = Field("org.genofed.hub", description="Reverse-domain id of the hub's Beacon")
    nodes: list[HubNode] = Field(default_factory=list, description="The nodes the hub asks")
    deadline_s: float = Field(
        5.0, gt=0, le=120, description="Default overall deadline of one fanned-out request"
    )
    health_interval_s: float = Field(
        10.0, gt=0, description="How often each node's health is checked in the background"
    )
    audit_anchor_interval_s: float = Field(
        300.0,
        ge=0,
        description="How often the hub fetches each node's signed audit head and keeps it "
        "(under state_dir/audit-anchors/, for `genofed audit verify --anchors`); 0: never",
    )
    breaker_failures: int = Field(
        3,
        ge=1,
        description="Consecutive failures after which a node is skipped until its health "
        "check passes again",
    )
    token_exchange_url: str | None = Field(
        None,
        description="The broker's RFC 8693 token endpoint: the hub exchanges the caller's "
        "token there for a Passport addressed to each node (never forwarding the caller's). "
        "Without it, only anonymous requests are fanned out",
    )
    disclosure: Disclosure = Field(
        default_factory=Disclosure,
        description="Applied again to merged counts (min_count, round_to)",
    )
    state_dir: str = Field(
        "hub-state", description="Saved cohorts and other state (relative to hub.yaml)"
    )
    max_request_bytes: int = Field(
        1_000_000, ge=1024, description="A request body larger than this is refused (413)"
    )
    max_reply_bytes: int = Field(
        32_000_000,
        ge=1024,
        description="A node's reply larger than this is cut off: that node's error",
    )

    @field_validator("format")
    @classmethod
    def _format(cls, value: int) -> int:
        return _check_format(value, "hub.yaml")

    @model_validator(mode="after")
    def _unique_names(self) -> HubConfig:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique: {names}")
        return self


def load_hub_config(path: Path) -> HubConfig:
    return _load(path, HubConfig, "write one (see docs/hub.md)")


def save_hub_config(config: HubConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
