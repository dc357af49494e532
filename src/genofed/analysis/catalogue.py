"""The vetted analyses a node runs, and one step of each.

An analysis has a name, a version, its parameters (a pydantic model, published as JSON
Schema) and its steps. A step reads the variables it names from the node's rows (a
``NodeData``: the node gives it the individuals of one dataset, restricted to a cohort),
computes what would leave the node, and checks the disclosure rules; a failed rule
withholds the whole payload. What a step may release is of two kinds:

* ``plain``: released as it is (the levels of categorical variables, the columns of a
  design), for the coordinator to agree on before any sum;
* ``vector``: numbers every node sends the same way, to be summed by secure aggregation
  (the hub sees only their sum over the nodes).

Analysts choose variables, formulas and (the coordinator) coefficients: never vectors of
rows, seeds or individuals.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy import special

from genofed._exceptions import QueryError
from genofed.analysis import descriptive, design, firth, glm, gwas, ld, pca, rules
from genofed.config import AnalysisRules


class NodeData(Protocol):
    """What a step may read of the node's data (the node gives it one dataset, restricted
    to a cohort): never more than the rows of the variables it names."""

    def frame(self, names: set[str]) -> pd.DataFrame:
        """One row per individual of the cohort, one column per variable named, indexed
        by individual id."""
        ...

    def variants(self, region: str | None, ids: list[str] | None) -> pd.DataFrame:
        """The dataset's split alleles (``variant_id``, ``chrom``, ``pos``, ``ref``, ``alt``,
        ``site_idx``, ``allele_idx``) in ``region`` (``chr:start-end``) or of ``ids``."""
        ...

    def dosages(
        self, variants: pd.DataFrame, individuals: pd.Index
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Blocks of ``(which variants, dosages individuals x variants)``, NaN missing."""
        ...

    def sums(
        self, variants: pd.DataFrame, individuals: pd.Index, d: np.ndarray, e: np.ndarray
    ) -> gwas.DosageSums:
        """``gwas.DosageSums`` of the variants over the individuals (the rows of d, e)."""
        ...

    def genotyped(self) -> set[str]:
        """The individuals with genotypes in the dataset."""
        ...

    def keep_components(self, components: pd.DataFrame) -> None:
        """Keep principal components at the node (never released), as variables PC1..."""
        ...

    def training_round(self, limit: int) -> int | None:
        """Count one training round of this dataset (every job's together) against
        ``limit``: the rounds used with this one, or None when the budget is spent."""
        ...


_VARIABLE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class GlmParams(BaseModel):
    """``levels``: this node's levels of the model's categorical variables. ``fit``: this
    node's information matrix, working vector and deviance at ``beta`` (``null``: R's
    start values)."""

    model_config = ConfigDict(extra="forbid")
    step: Literal["levels", "fit"]
    formula: str = Field(max_length=1000, examples=["case ~ age + sex + bmi"])
    family: glm.Family = "gaussian"
    offset: str | None = Field(None, max_length=200, examples=["np.log(exposure)"])
    levels: dict[str, list[str]] = Field(
        default_factory=dict, description="The agreed levels of each categorical variable"
    )
    beta: list[float] | None = Field(None, max_length=200)
    null_eta: float | None = None

    @field_validator("formula")
    @classmethod
    def _formula(cls, formula: str) -> str:
        try:
            design.parse(formula)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        return formula

    @field_validator("offset")
    @classmethod
    def _offset(cls, offset: str | None) -> str | None:
        if offset is not None:
            try:
                design.check_expression(offset, "offset")
            except QueryError as exc:
                raise ValueError(str(exc)) from None
        return offset


class DescribeParams(BaseModel):
    """n, sums and cross-products of numeric variables (means, variances, correlations)."""

    model_config = ConfigDict(extra="forbid")
    step: Literal["moments"] = "moments"
    variables: list[Annotated[str, Field(pattern=_VARIABLE)]] = Field(min_length=1, max_length=20)


class TableParams(BaseModel):
    """A contingency table of one or two variables: ``levels`` first, then ``counts`` over
    the agreed levels."""

    model_config = ConfigDict(extra="forbid")
    step: Literal["levels", "counts"]
    row: str = Field(pattern=_VARIABLE)
    column: str | None = Field(None, pattern=_VARIABLE)
    levels: dict[str, list[str]] = Field(default_factory=dict)


class GwasParams(BaseModel):
    """``levels``: this node's levels of categorical covariates. ``variants``: the
    variants of ``region`` this node holds. ``block``: the sums of the listed variants,
    zeros for those withheld here (a minor allele count from 1 to ``min_mac`` - 1), whose
    positions in the block the result names. ``null``, ``firth_*``: the logistic model's
    Newton rounds."""

    model_config = ConfigDict(extra="forbid")
    step: Literal["levels", "variants", "null", "block", "firth_information", "firth_score"]
    phenotypes: list[Annotated[str, Field(pattern=_VARIABLE)]] = Field(min_length=1, max_length=20)
    covariates: list[Annotated[str, Field(pattern=_VARIABLE)]] = Field(
        default_factory=list, max_length=50
    )
    model: Literal["linear", "logistic"] = "linear"
    beta: list[float] | None = Field(None, max_length=200, description="logistic: the null model's")
    null_eta: float | None = None
    betas: list[list[float]] | None = Field(
        None, max_length=1000, description="firth: each variant's β (covariates, then it)"
    )
    inverses: list[list[list[float]]] | None = Field(
        None, max_length=1000, description="firth_score: each variant's pooled I(β)⁻¹"
    )
    mean_dosages: list[float] | None = Field(
        None, max_length=1000, description="firth: each variant's pooled mean dosage"
    )
    region: str | None = Field(None, max_length=60, examples=["22:16000000-17000000"])
    variants: list[Annotated[str, Field(max_length=2100)]] | None = Field(None, max_length=5000)
    levels: dict[str, list[str]] = Field(default_factory=dict)
    min_mac: int = Field(3, ge=1, description="At least this node's min_mac")


class PcaParams(BaseModel):
    """``variants``: the variants of ``region`` this node can take part in. ``moments``:
    per-variant sums for the pooled standardisation. ``ld``: the products of each
    standardised variant with the ``window`` - 1 after it, for pruning by r². ``product``:
    XᵢᵀXᵢQ at the hub's basis ``q``. ``keep``: this node's people's components from the
    final basis, kept at the node (nothing leaves)."""

    model_config = ConfigDict(extra="forbid")
    step: Literal["variants", "moments", "ld", "product", "keep"]
    region: str | None = Field(None, max_length=60)
    variants: list[Annotated[str, Field(max_length=2100)]] | None = Field(None, max_length=20_000)
    mean: list[float] | None = None
    sd: list[float] | None = None
    q: list[list[float]] | None = None
    eigenvalues: list[float] | None = Field(None, max_length=50)
    window: int = Field(50, ge=2, le=100)
    k: int = Field(10, ge=1, le=50)
    min_mac: int = Field(3, ge=1)


_VARIANT = r"^([0-9XYMT]{1,2}-[0-9]{1,10}-[ACGTN]{1,1000}-[ACGTN*]{1,1000}|rs[0-9]{1,12})$"


class LearnParams(BaseModel):
    """``levels``: this node's levels of categorical features. ``moments``: sums of the
    training rows' features, for the pooled standardisation. ``round``: this node's
    evaluation of ``weights``, then its update from training them locally. ``evaluate``:
    the evaluation alone (of the final model)."""

    model_config = ConfigDict(extra="forbid")
    step: Literal["levels", "moments", "round", "evaluate"]
    target: str = Field(pattern=_VARIABLE, description="A binary (0/1) clinical variable")
    features: list[Annotated[str, Field(pattern=_VARIABLE)]] = Field(
        default_factory=list, max_length=100, description="Clinical variables, PCs"
    )
    variants: list[Annotated[str, Field(pattern=_VARIANT)]] = Field(
        default_factory=list,
        max_length=200,
        description="Variants as ALT dosages",
    )
    pgs: list[tuple[Annotated[str, Field(pattern=_VARIANT)], float]] = Field(
        default_factory=list, max_length=20_000, description="A polygenic score's weights"
    )
    levels: dict[str, list[str]] = Field(default_factory=dict)
    model: Literal["logistic", "mlp"] = "logistic"
    hidden: int = Field(16, ge=1, le=256)
    mean: list[float] | None = Field(None, max_length=400)
    sd: list[float] | None = Field(None, max_length=400)
    weights: list[float] | None = Field(None, max_length=200_000)
    epochs: int = Field(1, ge=1, le=100)
    lr: float = Field(0.1, gt=0, le=100)
    batch_size: int = Field(0, ge=0, le=1_000_000, description="0: full batch")
    optimizer: Literal["sgd", "adam"] = "sgd"
    mu: float = Field(0.0, ge=0, le=100, description="FedProx's proximal weight")
    seed: int = Field(0, ge=0, lt=2**63, description="The coordinator's, for the local shuffles")
    clip: float | None = Field(
        None, gt=0, le=1e6, description="Differential privacy: the largest norm of an update"
    )
    noise_sd: float = Field(0.0, ge=0, le=1e6, description="... and this node's noise share")
    dp_sgd_noise: float | None = Field(
        None, gt=0, le=1e3, description="DP-SGD at the node: the noise multiplier (Opacus)"
    )
    dp_sgd_clip: float = Field(1.0, gt=0, le=1e6, description="... each row's gradient norm")
    dp_delta: float = Field(1e-5, gt=0, lt=1, description="... the δ of the ε reported")
    round: int = Field(0, ge=0, le=10_000, description="Which round this is (DP-SGD's ε)")


@dataclass
class StepResult:
    checks: list[rules.RuleCheck]
    n: int  # the complete rows the step used
    n_dropped: int  # rows missing a variable it uses
    plain: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None

    @property
    def released(self) -> bool:
        return all(c.passed for c in self.checks)

    def withheld(self) -> StepResult:
        """What leaves when a rule failed: the checks, nothing else."""
        return StepResult(self.checks, self.n, self.n_dropped)


@dataclass(frozen=True)
class Analysis:
    name: str
    version: str
    title: str
    params: type[BaseModel]
    rules: tuple[str, ...]
    run: Callable[[Any, NodeData, AnalysisRules], StepResult]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "parameters": self.params.model_json_schema(),
            "rules": list(self.rules),
        }


def _complete(frame: pd.DataFrame, names: set[str]) -> pd.DataFrame:
    return frame[sorted(names)].dropna()


def _level_text(value: Any) -> str:
    """A level as text: 1.0 and 1 are the same level "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _level_checks(data: pd.DataFrame, names: list[str], limits: AnalysisRules) -> list:
    counts = [data[name].map(_level_text).value_counts().to_numpy() for name in names]
    cells = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    return [rules.table_cells(cells, limits)]


def _subsets(people: int, complete: int, limits: AnalysisRules) -> list[rules.RuleCheck]:
    return [
        rules.subset_size(people, limits, "cohort"),
        rules.subset_size(complete, limits, "set of complete rows"),
    ]


def _glm(params: GlmParams, data: NodeData, limits: AnalysisRules) -> StepResult:
    names = design.variables(params.formula, params.offset)
    frame = data.frame(names)
    complete = _complete(frame, names)
    n, dropped = len(complete), len(frame) - len(complete)
    subset = _subsets(len(frame), n, limits)
    if params.step == "levels":
        levels = design.categorical_levels(complete, names)
        checks = [*subset, *_level_checks(complete, sorted(levels), limits)]
        return StepResult(checks, n, dropped, plain={"levels": levels})
    built = design.design(params.formula, frame, params.levels, offset=params.offset)
    glm.check_outcome(params.family, built.y)
    p = len(built.columns)
    if params.beta is not None and len(params.beta) != p:
        raise QueryError(f"beta has {len(params.beta)} values for {p} coefficients")
    checks = [
        rules.enough_observations(n, limits),
        *subset,
        rules.parameters_per_observation(p, n, limits),
    ]
    if params.family == "binomial":
        checks.append(rules.outcome_levels(built.y, limits))
    part = glm.glm_part(
        built.x,
        built.y,
        params.family,
        None if params.beta is None else np.asarray(params.beta),
        offset=built.offset,
        null_eta=params.null_eta,
    )
    plain = {"columns": built.columns, "intercept": built.intercept}
    return StepResult(checks, n, dropped, plain=plain, vector=part.vector())


def _describe(params: DescribeParams, data: NodeData, limits: AnalysisRules) -> StepResult:
    names = list(dict.fromkeys(params.variables))
    frame = data.frame(set(names))
    vector = descriptive.moments_part(frame, names)
    n = int(vector[0])
    checks = [
        rules.enough_observations(n, limits),
        *_subsets(len(frame), n, limits),
    ]
    return StepResult(checks, n, len(frame) - n, plain={"variables": names}, vector=vector)


def _table(params: TableParams, data: NodeData, limits: AnalysisRules) -> StepResult:
    names = [params.row] + ([params.column] if params.column else [])
    if len(set(names)) != len(names):
        raise QueryError("tabulate two different variables")
    frame = data.frame(set(names))
    complete = _complete(frame, set(names)).map(_level_text)
    n, dropped = len(complete), len(frame) - len(complete)
    subset = _subsets(len(frame), n, limits)
    if params.step == "levels":
        levels = {name: sorted(set(complete[name])) for name in names}
        return StepResult(
            [*subset, *_level_checks(complete, names, limits)], n, dropped, {"levels": levels}
        )
    missing = [name for name in names if name not in params.levels]
    if missing:
        raise QueryError(f"no agreed levels for {', '.join(missing)}: run the levels step first")
    counted = complete.assign(_all="all")
    levels = {**params.levels, "_all": ["all"]}
    unknown = [name for name in names if set(complete[name]) - set(params.levels[name])]
    if unknown:
        raise QueryError(f"{', '.join(unknown)} has levels outside the agreed ones")
    counts = descriptive.table_part(counted, params.row, params.column or "_all", levels)
    checks = [*subset, rules.table_cells(counts, limits)]
    return StepResult(checks, n, dropped, plain={"shape": list(counts.shape)},
                      vector=counts.ravel().astype(np.float64))  # fmt: skip


def _genotyped_rows(frame: pd.DataFrame, data: NodeData) -> pd.DataFrame:
    """The rows of individuals with genotypes (membership in Python: pandas' isin on an
    Arrow string index is ten times slower here)."""
    genotyped = data.genotyped()
    return frame[np.fromiter((i in genotyped for i in frame.index), bool, len(frame))]


def _gwas_rows(
    frame: pd.DataFrame, names: set[str], data: NodeData
) -> tuple[pd.DataFrame, int, int]:
    """The individuals complete in every phenotype and covariate, with genotypes; and
    how many the cohort had, and how many were dropped."""
    complete = _genotyped_rows(_complete(frame, names), data)
    return complete, len(frame), len(frame) - len(complete)


def _minor_allele_counts(dosages: np.ndarray) -> np.ndarray:
    """Of a dosage matrix (rows x variants, NaN missing), as from a node's sums."""
    n = len(dosages)
    return gwas.minor_allele_counts(gwas.dosage_sums(dosages, np.ones((n, 1)), np.zeros(n)), 0, n)


@dataclass
class _GwasModel:
    frame: pd.DataFrame  # kept so that its id is not reused while this is cached
    rows: pd.DataFrame
    people: int
    dropped: int
    built: design.Design | None = None


# A GWAS asks the same rows and design matrix of every block (hundreds of tasks): both
# are kept for the last few (frame, model) pairs. The frame is the node's cached one, so
# a new dataset version, cohort or table is a new frame.
_MODELS: OrderedDict[tuple, _GwasModel] = OrderedDict()
_MODELS_LOCK = threading.Lock()


def _gwas_model(params: GwasParams, data: NodeData, formula: str) -> _GwasModel:
    names = set(params.phenotypes) | set(params.covariates)
    frame = data.frame(names)
    levels = tuple(sorted((k, tuple(v)) for k, v in params.levels.items()))
    key = (id(frame), tuple(params.phenotypes), tuple(params.covariates), levels)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None and model.frame is frame:
            _MODELS.move_to_end(key)
            return model
    rows, people, dropped = _gwas_rows(frame, names, data)
    built = None if params.step in ("levels", "variants") else design.design(
        formula, rows, params.levels)  # fmt: skip
    model = _GwasModel(frame, rows, people, dropped, built)
    if built is not None:
        with _MODELS_LOCK:
            _MODELS[key] = model
            while len(_MODELS) > 8:
                _MODELS.popitem(last=False)
    return model


def _gwas(params: GwasParams, data: NodeData, limits: AnalysisRules) -> StepResult:
    if params.region is None and params.step == "variants":
        raise QueryError("name a region (chrom:start-end) to scan")
    formula = f"{params.phenotypes[0]} ~ {' + '.join(params.covariates) or '1'}"
    model = _gwas_model(params, data, formula)
    rows, people, dropped = model.rows, model.people, model.dropped
    n = len(rows)
    subset = _subsets(people, n, limits)
    min_mac = max(params.min_mac, limits.min_mac)
    if params.step == "levels":
        levels = design.categorical_levels(rows, set(params.covariates))
        checks = [*subset, *_level_checks(rows, sorted(levels), limits)]
        return StepResult(checks, n, dropped, plain={"levels": levels})
    if params.step == "variants":  # what this node holds; rare ones are withheld per block
        variants = data.variants(params.region, None)
        checks = [rules.enough_observations(n, limits), *subset]
        return StepResult(checks, n, dropped, plain={"variants": variants["variant_id"].tolist()})
    built = model.built
    assert built is not None
    y = rows[params.phenotypes].to_numpy(dtype=np.float64)
    model_checks = [
        rules.enough_observations(n, limits),
        *subset,
        rules.parameters_per_observation(len(built.columns) + 1, n, limits),
    ]
    if params.model == "logistic":
        if len(params.phenotypes) != 1:
            raise QueryError("a logistic GWAS tests one binary phenotype at a time")
        glm.check_outcome("binomial", y[:, 0])
        model_checks.append(rules.outcome_levels(y[:, 0], limits))
    beta = None if params.beta is None else np.asarray(params.beta)
    firth_step = params.step in ("firth_information", "firth_score")
    if beta is not None and len(beta) != len(built.columns):
        raise QueryError(f"beta has {len(beta)} values for {len(built.columns)} covariates")
    covariate_plain = {"covariates": built.columns, "intercept": built.intercept,
                       "phenotypes": params.phenotypes, "k": len(built.columns),
                       "m": len(params.phenotypes)}  # fmt: skip
    if params.step == "null":  # the covariates-only model, fitted by the hub's GLM rounds
        if params.model != "logistic":
            raise QueryError("the null step belongs to a logistic GWAS")
        part = glm.glm_part(built.x, y[:, 0], "binomial", beta, null_eta=params.null_eta)
        return StepResult(model_checks, n, dropped, plain=covariate_plain, vector=part.vector())
    if not params.variants:
        raise QueryError("list the block's variants")
    variants = data.variants(None, params.variants).set_index("variant_id")
    absent = [v for v in params.variants if v not in variants.index]
    if absent:
        raise QueryError(f"{len(absent)} variant(s) of the block are not here: {absent[:3]}")
    variants = variants.loc[params.variants].reset_index()
    if firth_step:
        g = np.concatenate([block for _, block in data.dosages(variants, rows.index)], axis=1)
        mac = _minor_allele_counts(g)
    else:  # the block's sums, read chunk by chunk of the genotypes
        if params.model == "logistic":
            if beta is None:
                raise QueryError("a logistic block needs the null model's coefficients (beta)")
            fitted = special.expit(built.x @ beta)
            columns = gwas.score_columns(built.x, y[:, 0], fitted)
            one = built.x.shape[1] + 1
        else:
            columns = gwas.linear_columns(built.x, y)
            one = built.x.shape[1] + y.shape[1]
        sums = data.sums(variants, rows.index, *columns)
        mac = gwas.minor_allele_counts(sums, one, n)
    rare = (mac > 0) & (mac < min_mac)
    detail = (
        f"{int(rare.sum())} variant(s) with a minor allele count below {min_mac}"
        if rare.any()
        else "every variant's minor allele count is 0 or enough"
    )
    plain = {**covariate_plain, "v": len(params.variants)}
    if firth_step:  # the hits were tested at every node: none may be rare here
        check = rules.RuleCheck("min_mac", not rare.any(), detail)
        return _firth_step(params, built.x, y[:, 0], g, [*model_checks, check], (n, dropped),
                           plain)  # fmt: skip
    # A block's rare variants are withheld: zeros in their place, and their positions
    # named, so that the hub leaves them out of the whole analysis.
    sums.gd[rare], sums.gg[rare], sums.md[rare] = 0.0, 0.0, 0.0
    plain["withheld"] = np.flatnonzero(rare).tolist()
    if rare.any():
        detail += " withheld (zeros sent in their place)"
    checks = [*model_checks, rules.RuleCheck("min_mac", True, detail)]
    if params.model == "logistic":
        score = gwas.score_part(built.x, fitted, sums)
        return StepResult(checks, n, dropped, plain=plain, vector=score.vector())
    part = gwas.linear_part(built.x, y, sums)
    return StepResult(checks, n, dropped, plain=plain, vector=part.vector())


def _firth_step(
    params: GwasParams,
    covariates: np.ndarray,
    y: np.ndarray,
    g: np.ndarray,
    checks: list[rules.RuleCheck],
    counts: tuple[int, int],
    plain: dict[str, Any],
) -> StepResult:
    """Half a Newton iteration of the Firth fits of several variants at once, each at its
    own β: the information and log-likelihood, or the modified score with the variant's
    pooled inverse; the variants' parts one after the other in the vector."""
    h = g.shape[1]
    if params.model != "logistic" or params.betas is None or len(params.betas) != h:
        raise QueryError("a Firth step fits the listed variants of a logistic GWAS, a β each")
    if params.mean_dosages is None or len(params.mean_dosages) != h:
        raise QueryError("a Firth step needs each variant's pooled mean dosage")
    p = covariates.shape[1] + 1
    if params.step == "firth_score" and (params.inverses is None or len(params.inverses) != h):
        raise QueryError("the Firth score step needs each variant's pooled inverse information")
    parts = []
    for j in range(h):
        dosage = np.where(np.isnan(g[:, j]), params.mean_dosages[j], g[:, j])
        x = np.column_stack([covariates, dosage])
        beta = np.asarray(params.betas[j], dtype=np.float64)
        if len(beta) != p:
            raise QueryError(f"beta has {len(beta)} values for {p} coefficients")
        if params.step == "firth_information":
            parts.append(firth.information_part(x, y, beta))
            continue
        inverse = np.asarray(params.inverses[j], dtype=np.float64)  # type: ignore[index]
        if inverse.shape != (p, p):
            raise QueryError("an inverse information has the wrong shape")
        parts.append(firth.score_part(x, y, beta, inverse))
    return StepResult(checks, *counts, plain={**plain, "p": p}, vector=np.concatenate(parts))


def _pca(params: PcaParams, data: NodeData, limits: AnalysisRules) -> StepResult:
    frame = data.frame(set())
    rows = _genotyped_rows(frame, data)
    n = len(rows)
    checks = [rules.enough_observations(n, limits), *_subsets(len(frame), n, limits)]
    if params.step == "variants":
        if params.region is None:
            raise QueryError("name a region (chrom:start-end) for the PCA's variants")
        variants = data.variants(params.region, None)
        min_mac = max(params.min_mac, limits.min_mac)
        mac = gwas.minor_allele_counts(data.sums(variants, rows.index, np.ones((n, 1)),
                                                 np.zeros(n)), 0, n)  # fmt: skip
        keep = (mac == 0) | (mac >= min_mac)
        plain = {"variants": variants["variant_id"][keep].tolist(), "vetoed": int((~keep).sum())}
        return StepResult(checks, n, len(frame) - n, plain=plain)
    if not params.variants:
        raise QueryError("list the PCA's variants")
    variants = data.variants(None, params.variants).set_index("variant_id")
    if len(variants) != len(set(params.variants)):
        raise QueryError("some of the PCA's variants are not here")
    variants = variants.loc[params.variants].reset_index()
    if params.step == "moments":
        parts = [pca.moments_part(b).reshape(3, -1) for _, b in data.dosages(variants, rows.index)]
        return StepResult(checks, n, len(frame) - n, plain={"v": len(variants)},
                          vector=np.hstack(parts).ravel())  # fmt: skip
    if params.mean is None or params.sd is None or len(params.mean) != len(variants):
        raise QueryError("the ld, product and keep steps need each variant's pooled scaling")
    scaling = pca.Scaling(params.mean, params.sd)
    if params.step == "ld":  # block by block: the node holds one block of dosages at a time
        blocks = (pca.standardised(b, scaling.part(part))
                  for part, b in data.dosages(variants, rows.index))  # fmt: skip
        band = ld.streamed_band_part(blocks, params.window)
        return StepResult(checks, n, len(frame) - n, plain={"shape": list(band.shape)},
                          vector=band.ravel())  # fmt: skip
    if params.q is None:
        raise QueryError("the product and keep steps need a basis")
    g = np.concatenate([b for _, b in data.dosages(variants, rows.index)], axis=1)
    x = pca.standardised(g, scaling)
    q = np.asarray(params.q, dtype=np.float64)
    if q.shape[0] != x.shape[1]:
        raise QueryError(f"the basis has {q.shape[0]} rows for {x.shape[1]} variants")
    if params.step == "product":
        return StepResult(checks, n, len(frame) - n, plain={"shape": list(q.shape)},
                          vector=pca.product_part(x, q).ravel())  # fmt: skip
    if not params.eigenvalues:
        raise QueryError("the keep step needs the eigenvalues")
    fit = pca.PcaFit(k=len(params.eigenvalues), q=params.q, eigenvalues=params.eigenvalues)
    values = pca.components(x, fit)
    components = pd.DataFrame(values, index=rows.index,
                              columns=[f"PC{i + 1}" for i in range(values.shape[1])])  # fmt: skip
    if all(c.passed for c in checks):
        data.keep_components(components)
    return StepResult(checks, n, len(frame) - n, plain={"kept": list(components.columns)})


@dataclass
class _LearningRows:
    frame: pd.DataFrame  # kept so that its id is not reused while this is cached
    people: int
    dropped: int
    columns: list[str]
    x: np.ndarray  # features, unstandardised (NaN: a missing dosage)
    y: np.ndarray
    test: np.ndarray  # held-out rows


_LEARNING: OrderedDict[tuple, _LearningRows] = OrderedDict()


def _learning_rows(params: LearnParams, data: NodeData) -> _LearningRows:
    """The complete rows' features and target (kept for the last few models: a training
    job asks for the same ones every round)."""
    names = {params.target, *params.features}
    frame = data.frame(names)
    levels = tuple(sorted((k, tuple(v)) for k, v in params.levels.items()))
    key = (id(frame), params.target, tuple(params.features), tuple(params.variants),
           tuple(params.pgs), levels)  # fmt: skip
    with _MODELS_LOCK:
        cached = _LEARNING.get(key)
        if cached is not None and cached.frame is frame:
            _LEARNING.move_to_end(key)
            return cached
    rows = _complete(frame, names)
    genotyped = bool(params.variants or params.pgs)
    if genotyped:
        rows = _genotyped_rows(rows, data)
    formula = f"{params.target} ~ {' + '.join(params.features) or '1'}"
    built = design.design(formula, rows, params.levels)
    keep = [i for i, c in enumerate(built.columns) if c != "Intercept"]  # the model has a bias
    x, columns = built.x[:, keep], [built.columns[i] for i in keep]
    if genotyped:
        wanted = list(dict.fromkeys([*params.variants, *(v for v, _ in params.pgs)]))
        g = np.concatenate([b for _, b in data.dosages(_named_variants(data, wanted),
                                                         rows.index)], axis=1)  # fmt: skip
        position = {v: i for i, v in enumerate(wanted)}
        x = np.column_stack([x, g[:, [position[v] for v in params.variants]]])
        columns += params.variants
        if params.pgs:
            pgs = g[:, [position[v] for v, _ in params.pgs]]
            # a missing dosage counts as the variant's mean dosage here, as plink2 --score
            pgs = np.where(np.isnan(pgs), np.nanmean(pgs, axis=0), pgs)
            x = np.column_stack([x, np.nan_to_num(pgs) @ np.array([w for _, w in params.pgs])])
            columns.append("PGS")
    if not columns:
        raise QueryError("name at least one feature")
    glm.check_outcome("binomial", built.y)
    test = learning_split(rows.index)
    result = _LearningRows(frame, len(frame), len(frame) - len(rows), columns, x, built.y, test)
    with _MODELS_LOCK:
        _LEARNING[key] = result
        while len(_LEARNING) > 4:
            _LEARNING.popitem(last=False)
    return result


def _named_variants(data: NodeData, names: list[str]) -> pd.DataFrame:
    """The variants named ``chrom-pos-ref-alt`` or by an rsID, in the order named; an
    rsID of a multi-allelic site names several alleles, so it is refused."""
    found = data.variants(None, names)
    rows = []
    for name in names:
        match = found[(found["variant_id"] == name) | (found["vcf_id"] == name)]
        match = match.drop_duplicates("variant_id")
        if len(match) > 1:
            raise QueryError(f"{name} names {len(match)} alleles here "
                             f"({', '.join(match['variant_id'])}): name one of them")  # fmt: skip
        if match.empty:
            raise QueryError(f"variant {name} is not here")
        rows.append(match)
    return pd.concat(rows, ignore_index=True)


def learning_split(ids: pd.Index) -> np.ndarray:
    from genofed.analysis import learning  # torch: only where a model is trained

    return learning.held_out(ids.astype(str))


def _learn(params: LearnParams, data: NodeData, limits: AnalysisRules) -> StepResult:
    from genofed.analysis import learning  # torch: only where a model is trained

    if params.step == "levels":
        names = {params.target, *params.features}
        rows = _complete(data.frame(names), names)
        levels = design.categorical_levels(rows, set(params.features))
        checks = [*_subsets(len(rows), len(rows), limits),
                  *_level_checks(rows, sorted(levels), limits)]  # fmt: skip
        return StepResult(checks, len(rows), 0, plain={"levels": levels})
    rows = _learning_rows(params, data)
    train, test = ~rows.test, rows.test
    n = int(train.sum())
    checks = [
        rules.enough_observations(n, limits),
        *_subsets(rows.people, len(rows.y), limits),
        # the training rows: the held-out ones only go into sums of histograms
        rules.outcome_levels(rows.y[train], limits, "this node's training rows"),
    ]
    plain: dict[str, Any] = {"columns": rows.columns}  # the counts go into the sums only
    if params.step == "moments":
        vector = learning.moments_part(rows.x[train], rows.y[train])
        return StepResult(checks, n, rows.dropped, plain=plain, vector=vector)
    if params.mean is None or params.sd is None or params.weights is None:
        raise QueryError("a training round needs the pooled scaling and the weights")
    if len(params.mean) != len(rows.columns) or len(params.sd) != len(rows.columns):
        raise QueryError(
            f"the scaling has {len(params.mean)} values for {len(rows.columns)} features"
        )
    spec = learning.ModelSpec(params.model, len(rows.columns), params.hidden)
    weights = np.asarray(params.weights, dtype=np.float64)
    if len(weights) != spec.size():
        raise QueryError(f"{len(weights)} weights for a model of {spec.size()}")
    x = learning.Scaling(params.mean, params.sd).apply(rows.x)
    y = np.asarray(rows.y, dtype=np.float64)
    evaluation = learning.evaluation_part(spec, weights, (x[train], y[train]), (x[test], y[test]))
    if params.step == "evaluate":
        return StepResult(checks, n, rows.dropped, plain=plain, vector=evaluation)
    used = data.training_round(limits.max_training_rounds) if all(c.passed for c in checks) else 0
    checks.append(rules.RuleCheck(
        "max_training_rounds", used is not None,
        f"training round {used} of at most {limits.max_training_rounds} for this dataset"
        if used is not None else
        f"this dataset's budget of {limits.max_training_rounds} training rounds is spent",
    ))  # fmt: skip
    if used is None:
        return StepResult(checks, n, rows.dropped)
    training = learning.LocalTraining(params.epochs, params.lr, params.batch_size,
                                      params.optimizer, params.mu)  # fmt: skip
    if params.dp_sgd_noise is not None:
        private = learning.DpSgd(params.dp_sgd_noise, params.dp_sgd_clip)
        update = learning.train_part(spec, weights, x[train], y[train], training, params.seed,
                                     private)  # fmt: skip
        epsilon = learning.dp_sgd_epsilon(private, training, n, max(1, params.round),
                                          params.dp_delta)  # fmt: skip
        plain["dpSgdEpsilon"] = round(epsilon, 2)  # rounded: it depends on the rows here
    elif params.clip is None:
        update = learning.train_part(spec, weights, x[train], y[train], training, params.seed)
    else:
        privacy = learning.NodePrivacy(params.clip, params.noise_sd)
        update = learning.private_train_part(spec, weights, x[train], y[train], training,
                                             params.seed, privacy)  # fmt: skip
    return StepResult(checks, n, rows.dropped, plain=plain,
                      vector=np.concatenate([evaluation, update]))  # fmt: skip


CATALOGUE: dict[str, Analysis] = {
    a.name: a
    for a in (
        Analysis(
            "glm",
            "1.0.0",
            "Generalised linear model (gaussian, binomial, poisson) by Fisher scoring",
            GlmParams,
            ("min_n", "nfilter.subset", "nfilter.glm", "nfilter.tab"),
            _glm,
        ),
        Analysis(
            "describe",
            "1.0.0",
            "Counts, means, variances and correlations of numeric variables",
            DescribeParams,
            ("min_n", "nfilter.subset"),
            _describe,
        ),
        Analysis(
            "gwas",
            "1.0.0",
            "Genome-wide association: linear models per variant, exact to the pooled OLS",
            GwasParams,
            ("min_n", "nfilter.subset", "nfilter.glm", "nfilter.tab", "min_mac"),
            _gwas,
        ),
        Analysis(
            "pca",
            "1.0.0",
            "Principal components of genotypes; each node keeps its people's components",
            PcaParams,
            ("min_n", "nfilter.subset", "min_mac"),
            _pca,
        ),
        Analysis(
            "learn",
            "1.0.0",
            "Federated learning: a logistic model or an MLP trained at the nodes, updates summed",
            LearnParams,
            ("min_n", "nfilter.subset", "nfilter.tab", "max_training_rounds"),
            _learn,
        ),
        Analysis(
            "table",
            "1.0.0",
            "Contingency table of one or two variables",
            TableParams,
            ("nfilter.subset", "nfilter.tab"),
            _table,
        ),
    )
}


def analysis_of(name: str) -> Analysis:
    analysis = CATALOGUE.get(name)
    if analysis is None:
        raise QueryError(
            f"no vetted analysis {name!r} here; GET /analysis/v1/catalogue lists them "
            f"({', '.join(CATALOGUE)})"
        )
    return analysis


def parameters(analysis: Analysis, raw: Any) -> BaseModel:
    """``raw`` as the analysis's parameters, or a ``QueryError`` naming what is wrong."""
    try:
        return analysis.params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}"
            for e in exc.errors()
        )
        raise QueryError(f"the parameters of {analysis.name} are not valid: {problems}") from None


def run_step(name: str, raw: Any, data: NodeData, limits: AnalysisRules) -> StepResult:
    """One step of a vetted analysis; a payload whose rules failed is withheld whole."""
    analysis = analysis_of(name)
    result = analysis.run(parameters(analysis, raw), data, limits)
    if result.vector is not None and not np.all(np.isfinite(result.vector)):
        raise QueryError("the step's statistics are not finite: check the model and its data")
    return result if result.released else result.withheld()
