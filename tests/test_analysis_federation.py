"""Federated analyses through real processes: a broker, three nodes and a hub, each
``genofed ... serve`` on loopback. The nodes hold uneven splits of a cohort (the
simulator's individuals, with measures in a table each node registered); every result is
compared with the pooled analysis (statsmodels, DuckDB) of the same rows."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from genofed.analysis import descriptive, design, secure_sum
from genofed.config import DatasetPolicy, HubConfig, load_config, save_config
from genofed.governance.audit import AuditLog
from genofed.governance.keys import load_or_create_aggregation_key, public_key_text
from genofed.hub.analyses import AnalysisStore, Member, secure_round
from genofed.hub.client import NodeClient
from genofed.hub.nodes import Registry
from genofed.hub.transport import AiohttpTransport
from genofed.store.node_dir import NodeDir
from genofed.store.registered_tables import register_table
from tests.analysis_data import cohort
from tests.browser import needs_chromium
from tests.federation import Federation, analyse, federation
from tests.live_server import start_node_server
from tests.test_cli_input import refused, run

NODES = {"alpha": 420, "beta": 260, "gamma": 150}  # people at each node


def _build(fed: Federation) -> dict[str, pd.DataFrame]:
    """Three nodes whose keys pin each other, each with its table ``measures``; returns
    each node's rows (its individuals' sex and age joined with its measures)."""
    frames, roots = {}, {}
    pooled = cohort(sum(NODES.values()), seed=11)
    start = 0
    for seed, (name, n) in enumerate(NODES.items()):

        def configure(config: Any, name: str = name) -> None:
            config.datasets[f"{name}-cohort"] = DatasetPolicy(analysis="registered")

        root = fed.build_node(name, seed=seed + 3, samples=n, sites=30, configure=configure)
        roots[name] = root
        clinical = pd.read_csv(fed.cohorts[name].clinical)[["sample_id", "sex", "age"]]
        measures = (
            pooled.iloc[start : start + n].drop(columns=["age", "sex"]).reset_index(drop=True)
        )
        start += n
        if name == "gamma":
            measures = measures[measures["group"] != "c"].reset_index(drop=True)  # a level lacking
            measures["rare"] = 0
            measures.loc[:1, "rare"] = 1  # 2 cases here: below nfilter.tab
        else:
            measures["rare"] = (np.arange(len(measures)) % 7 == 0).astype(int)
        measures.insert(0, "individual_id", clinical["sample_id"].iloc[: len(measures)].to_numpy())
        path = fed.root / f"{name}-measures.csv"
        measures.to_csv(path, index=False)
        register_table(NodeDir(root), "measures", path, tier="registered")
        rows = clinical.rename(columns={"sample_id": "individual_id"}).merge(
            measures, on="individual_id", how="left"
        )
        frames[name] = rows.assign(age=rows["age"].astype(float))
    keys = {n: public_key_text(load_or_create_aggregation_key(NodeDir(r).aggregation_key_path))
            for n, r in roots.items()}  # fmt: skip
    for name, root in roots.items():
        config = load_config(NodeDir(root).config_path)
        config.analysis.peers = {peer: key for peer, key in keys.items() if peer != name}
        save_config(config, NodeDir(root).config_path)
        process, base = start_node_server(root)
        fed.processes[name], fed.nodes[name] = process, base
    return frames


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, str, dict]]:
    with federation(tmp_path_factory.mktemp("analysis-federation")) as fed:
        frames = _build(fed)
        yield fed, fed.start_hub(), frames


def _pooled(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames.values(), ignore_index=True)


def _reference(formula: str, frame: pd.DataFrame, family: Any, offset: str | None = None):
    levels = design.agree_levels([design.categorical_levels(frame, design.variables(formula))])
    built = design.design(formula, frame, levels, offset=offset)
    # a gaussian model's tests and intervals use t, as R's summary(glm) and confint(lm) do
    gaussian = isinstance(family, sm.families.Gaussian)
    model = sm.GLM(built.y, built.x, family=family, offset=built.offset).fit(use_t=gaussian)
    return built.columns, model


def _close(ours: list[dict], columns: list[str], model: Any) -> None:
    assert [c["name"] for c in ours] == columns
    estimates = np.array([c["estimate"] for c in ours])
    errors = np.array([c["std_error"] for c in ours])
    np.testing.assert_allclose(estimates, model.params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(errors, model.bse, rtol=1e-6)
    np.testing.assert_allclose([c["p_value"] for c in ours], model.pvalues, rtol=1e-5)
    intervals = np.array([[c["ci_low"], c["ci_high"]] for c in ours])
    np.testing.assert_allclose(intervals, model.conf_int(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("formula", "family", "offset", "reference"),
    [
        ("case ~ age + sex + bmi", "binomial", None, sm.families.Binomial()),
        ("qt ~ age + sex + bmi + group", "gaussian", None, sm.families.Gaussian()),
        ("events ~ age + sex", "poisson", "np.log(exposure)", sm.families.Poisson()),
    ],
)
def test_a_federated_glm_equals_the_pooled_glm(fed, formula, family, offset, reference) -> None:
    """Three nodes, uneven splits, one lacking a level of ``group``: the hub's estimates
    and standard errors are statsmodels' on the pooled rows, and the job records each
    round and node."""
    federation_, hub, frames = fed
    body = {"kind": "glm", "formula": formula, "family": family, "table": "measures"}
    if offset:
        body["offset"] = offset
    job = analyse(hub, federation_.access_token(), body)
    assert job["state"] == "succeeded", json.dumps(job, indent=1)[:3000]
    result = job["result"]
    columns, model = _reference(formula, _pooled(frames), reference, offset)
    _close(result["summary"]["coefficients"], columns, model)
    summary = result["summary"]
    assert summary["n"] == model.nobs
    assert summary["residual_deviance"] == pytest.approx(model.deviance, rel=1e-8)
    assert summary["null_deviance"] == pytest.approx(model.null_deviance, rel=1e-8)
    # R counts a gaussian model's dispersion as a parameter (its AIC is 2 more); statsmodels
    # does not
    dispersion = 2 if family == "gaussian" else 0
    assert summary["aic"] == pytest.approx(model.aic + dispersion, rel=1e-8)
    assert sorted(result["contributors"]) == sorted(NODES)
    assert set(result["nPerNode"]) == set(NODES)
    assert job["excluded"] == {}
    fits = [r for r in job["rounds"] if r["step"] == "fit"]
    assert len(fits) == summary["iterations"] + 1
    assert all(s["status"] == "ok" for r in fits for s in r["nodes"].values())
    if "group" in formula:
        assert result["levels"]["group"] == ["a", "b", "c"]


def test_descriptive_statistics_and_tables_equal_the_pooled_ones(fed) -> None:
    federation_, hub, frames = fed
    token = federation_.access_token()
    pooled = _pooled(frames)
    job = analyse(hub, token, {"kind": "describe", "variables": ["age", "bmi", "qt"],
                                "table": "measures"})  # fmt: skip
    assert job["state"] == "succeeded", json.dumps(job, indent=1)[:3000]
    stats = job["result"]["statistics"]
    complete = pooled[["age", "bmi", "qt"]].dropna()
    assert stats["n"] == len(complete)
    np.testing.assert_allclose(stats["means"], complete.mean(), rtol=1e-9)
    np.testing.assert_allclose(stats["variances"], complete.var(), rtol=1e-9)
    np.testing.assert_allclose(stats["correlation"], complete.corr(), rtol=1e-9)

    job = analyse(hub, token, {"kind": "table", "row": "sex", "column": "group",
                                "table": "measures"})  # fmt: skip
    assert job["state"] == "succeeded", json.dumps(job, indent=1)[:3000]
    table = job["result"]
    counts = duckdb.sql(
        'SELECT sex, "group", count(*) AS n FROM pooled WHERE sex IS NOT NULL AND '
        '"group" IS NOT NULL GROUP BY ALL'
    ).fetchall()
    expected = {(s, g): n for s, g, n in counts}
    for i, sex in enumerate(table["rows"]):
        for j, group in enumerate(table["columns"]):
            assert table["counts"][i][j] == expected.get((sex, group), 0)


def test_a_rule_failed_at_one_node_withholds_its_whole_payload(fed) -> None:
    """gamma has 2 cases of ``rare``: it withholds its payload (nfilter.tab), is left out
    and says why; two nodes are too few for a secure sum, so the model is not fitted, and
    gamma's audit log records the withheld task."""
    federation_, hub, _ = fed
    job = analyse(hub, federation_.access_token(), {"kind": "glm", "formula": "rare ~ age",
                   "family": "binomial", "table": "measures"})  # fmt: skip
    assert job["state"] == "failed"
    assert "gamma" in job["excluded"] and "outcome level" in job["excluded"]["gamma"]
    fit = next(r for r in job["rounds"] if r["step"] == "fit")
    assert fit["nodes"]["gamma"]["status"] == "withheld"
    # alpha and beta shared; each refuses to mask a sum of two (its minimum is three)
    assert "only 2 nodes shared" in fit["nodes"]["alpha"]["detail"]
    assert "did not complete" in job["error"] and job["result"] is None
    entries = _audit(federation_, "gamma")
    withheld = [e for e in entries if e.get("event") == "analysis-task" and
                e["decision"] == "withheld"]  # fmt: skip
    assert withheld and withheld[-1]["output"] is None
    assert any(r["rule"] == "nfilter.tab" and not r["passed"] for r in withheld[-1]["rules"])


def _audit(fed: Federation, node: str) -> list[dict[str, Any]]:
    log = AuditLog(NodeDir(fed.root / node).audit_path)
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def _task(fed: Federation, node: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One task at a node, followed to its end (as the hub does)."""
    passport = fed.passport(audience=fed.audience(node))
    headers = {"authorization": f"Bearer {passport}"}
    with httpx.Client(base_url=fed.nodes[node], headers=headers, timeout=30) as client:
        reply = client.post("/analysis/v1/tasks", json={"table": "measures", **body})
        if reply.status_code != 202:
            return reply.status_code, reply.json()
        task = reply.json()
        while task["state"] in ("queued", "running"):
            time.sleep(0.05)
            task = client.get(f"/analysis/v1/tasks/{task['id']}").json()
        return 200, task


def _secure(task: str, round_no: int = 0, participants=tuple(NODES)) -> dict[str, Any]:
    return {"task": task, "round": round_no, "participants": list(participants)}


def test_a_saturated_model_and_a_subset_of_two_are_refused_whole_and_audited(fed) -> None:
    federation_, _, frames = fed
    alpha = frames["alpha"]
    ages = alpha.groupby(["age", "sex"]).size()
    age, sex = ages[ages == 2].index[0]
    _, task = _task(federation_, "alpha", {
        "analysis": "describe", "params": {"variables": ["bmi"]},
        "cohort": {"min_age": age, "max_age": age, "sex": sex},
        "secure": _secure("subset-of-two-1"),
    })  # fmt: skip
    result = task["result"]
    assert result["released"] is False and result["plain"] is None and result["secure"] is None
    failed = {r["rule"] for r in result["rules"] if not r["passed"]}
    assert "nfilter.subset" in failed

    band = alpha[(alpha["age"] >= 40) & (alpha["age"] <= 42)].dropna()
    assert 10 <= len(band) < 27  # 9 parameters need 27 rows at 0.33 per row
    _, task = _task(federation_, "alpha", {
        "analysis": "glm",
        "params": {"step": "fit", "family": "gaussian",
                   "formula": "qt ~ age + sex + bmi + group + case + exposure + events"},
        "cohort": {"min_age": 40, "max_age": 42},
        "secure": _secure("saturated-1"),
    })  # fmt: skip
    result = task["result"]
    assert result["released"] is False and result["secure"] is None
    assert [r["rule"] for r in result["rules"] if not r["passed"]] == ["nfilter.glm"]
    entries = [e for e in _audit(federation_, "alpha") if e.get("event") == "analysis-task"]
    assert {e["task"] for e in entries if e["decision"] == "withheld"} >= {task["id"]}
    assert all(e["params"] and e["datasetVersion"] for e in entries)


def test_unpinned_replayed_and_too_few_participants_are_refused(fed) -> None:
    federation_, _, _ = fed
    describe = {"analysis": "describe", "params": {"variables": ["bmi"]}}
    status, body = _task(federation_, "beta", {**describe, "secure": _secure(
        "stranger-1", participants=[*NODES, "stranger"])})  # fmt: skip
    assert status == 409 and "stranger have no pinned" in json.dumps(body)
    _, task = _task(federation_, "beta", {**describe, "secure": _secure("replay-123")})
    assert task["state"] == "succeeded"
    _, task = _task(federation_, "beta", {**describe, "secure": _secure("replay-123")})
    assert task["state"] == "failed" and "already run here" in task["error"]["detail"]
    status, body = _task(federation_, "beta", {**describe, "secure": _secure(
        "too-few-1", participants=["alpha", "beta"])})  # fmt: skip
    assert status == 409 and "minimum of 3" in json.dumps(body)
    status, body = _task(
        federation_,
        "beta",
        {
            "analysis": "describe",
            "params": {"variables": ["nonsense"]},
            "secure": _secure("x-unknown"),
        },
    )
    assert status == 200 and "unknown variable" in body["error"]["detail"]
    status, body = _task(federation_, "beta", {"analysis": "regress-everything", "params": {}})
    assert status == 400 and "no vetted analysis" in json.dumps(body)
    passport_free = httpx.post(f"{federation_.nodes['beta']}/analysis/v1/tasks", json=describe)
    assert passport_free.status_code == 403


def _client(fed: Federation, config: HubConfig) -> NodeClient:
    async def credentials(node: Any, end: float) -> dict[str, str]:
        return {"authorization": f"Bearer {fed.passport(audience=node.passport_audience)}"}

    transport = AiohttpTransport(config, fed.root)
    return NodeClient(Registry(config), transport, credentials, 30.0)


def test_the_hub_sees_masked_values_and_a_node_killed_after_masking_is_still_summed(
    tmp_path: Path,
) -> None:
    """The hub's side of a secure round run against three node processes: what each node
    sends is not its value, and when gamma's process is killed right after it masked, the
    round completes with the sum over all three (its peers' shares unmask it)."""
    with federation(tmp_path) as fed:
        frames = _build(fed)
        config = HubConfig(nodes=[fed.hub_node(n) for n in NODES])
        members = [Member(fed.hub_node(n), n, None) for n in NODES]
        body = {"analysis": "describe", "table": "measures",
                "params": {"variables": ["age", "bmi"]}}  # fmt: skip
        seen: dict[str, Any] = {}

        def report(event: str, details: dict[str, Any]) -> None:
            if event == "masked":
                fed.processes["gamma"].kill()
                fed.processes["gamma"].wait()
                seen["masked"] = details["masked"]

        async def run() -> Any:
            client = _client(fed, config)
            try:
                return await secure_round(client, members, body, "killed-1", 0, 30, report)
            finally:
                await client.transport.close()

        result = asyncio.run(run())
        assert seen["masked"] == sorted(NODES)
        assert result.contributors == list(NODES)
        assert "did not reveal" in result.statuses["gamma"]["detail"]
        total = secure_sum.decode_wide(result.total, 32)
        expected = descriptive.moments_part(_pooled(frames), ["age", "bmi"])
        np.testing.assert_allclose(total, expected, rtol=1e-12)
        for name, frame in frames.items():
            own = secure_sum.encode_wide(descriptive.moments_part(frame, ["age", "bmi"]), 32, 3)
            assert not np.array_equal(own, result.received[name]), name
            assert own.shape == result.received[name].shape


def test_a_restarted_hub_marks_an_interrupted_analysis_failed(tmp_path: Path) -> None:
    store = AnalysisStore(tmp_path)
    from genofed.hub.analyses import AnalysisRequest

    job = store.new("owner", AnalysisRequest(kind="describe", variables=["age"]))
    job.state = "running"
    store.save(job)
    assert AnalysisStore(tmp_path).fail_interrupted() == 1
    again = store.get(job.id, "owner")
    assert again.state == "failed" and "restarted" in (again.error or "")
    with pytest.raises(Exception, match="no analysis"):
        store.get(job.id, "someone else")


def test_the_cli_fits_a_glm_and_describes_through_the_hub(fed) -> None:
    """``genofed glm`` prints R's summary table (progress per round on stderr), ``--json``
    the job; ``genofed stats`` a table; without a token both say what is missing."""
    federation_, hub, frames = fed
    env = {"GENOFED_HUB": hub, "GENOFED_TOKEN": federation_.access_token()}
    shown = run("glm", "case ~ age + sex + bmi", "--family", "binomial", "--table",
                "measures", env=env)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    columns, model = _reference("case ~ age + sex + bmi", _pooled(frames), sm.families.Binomial())
    for name, estimate in zip(columns, model.params, strict=True):
        line = next(row for row in shown.stdout.splitlines() if row.startswith(name + " "))
        assert float(line.split()[1]) == pytest.approx(estimate, rel=1e-3)
    assert "Residual deviance" in shown.stdout and "fit 0: alpha ok" in shown.stderr
    as_json = run("glm", "case ~ age + sex + bmi", "--family", "binomial", "--table",
                  "measures", "--json", env=env)  # fmt: skip
    job = json.loads(as_json.stdout)
    _close(job["result"]["summary"]["coefficients"], columns, model)

    table = run("stats", "--tabulate", "sex", "--by", "group", "--table", "measures", env=env)
    assert table.returncode == 0, table.stderr
    females = _pooled(frames).query("sex == 'female'")["group"].value_counts()
    row = next(r for r in table.stdout.splitlines() if "female" in r)
    assert [int(v) for v in row.replace("│", " ").split()[1:]] == [females[g] for g in "abc"]
    refused(run("glm", "case ~ age", env={"GENOFED_HUB": hub, "GENOFED_TOKEN": ""}),
            "need your token")  # fmt: skip
    refused(run("glm", "case ~ scale(age)", "--table", "measures", env=env),
            "scale() is not allowed")  # fmt: skip


@needs_chromium
def test_the_portal_fits_a_glm_and_draws_its_forest_plot(fed, browser: Any) -> None:
    """The analyses panel: outcome, covariates and family in a form; each node's progress;
    the coefficient table and a forest plot whose points are the hub's estimates."""
    federation_, hub, frames = fed
    page = browser.new_page()
    page.goto(hub)
    page.fill("#token", federation_.access_token())
    page.dispatch_event("#token", "change")
    page.fill("#glm-outcome", "qt")
    page.fill("#glm-covariates", "age + sex + bmi")
    page.select_option("#glm-family", "gaussian")
    page.fill("#glm-table", "measures")
    page.click("#glm-run")
    page.wait_for_selector("#glm-forest circle", timeout=60_000)
    columns, model = _reference("qt ~ age + sex + bmi", _pooled(frames), sm.families.Gaussian())
    shown = {
        row.get_attribute("data-name"): float(row.get_attribute("data-estimate"))
        for row in page.locator("#glm-summary tbody tr").all()
    }
    assert list(shown) == columns
    np.testing.assert_allclose(list(shown.values()), model.params, rtol=1e-6)
    points = page.locator("#glm-forest circle").all()
    assert [p.get_attribute("data-name") for p in points] == columns[1:]  # no intercept
    for point, low, high in zip(points, *model.conf_int()[1:].T, strict=True):
        assert float(point.get_attribute("data-low")) == pytest.approx(low, rel=1e-4)
        assert float(point.get_attribute("data-high")) == pytest.approx(high, rel=1e-4)
    nodes = page.inner_text("#glm-nodes")
    assert all(name in nodes for name in NODES) and "ok" in nodes

    page.fill("#glm-outcome", "rare")  # a new question: the old answer goes
    assert page.locator("#glm-forest circle").count() == 0
    page.fill("#glm-covariates", "age")
    page.select_option("#glm-family", "binomial")
    page.click("#glm-run")
    page.wait_for_function("document.querySelector('#glm-error').textContent.length > 0",
                           timeout=60_000)  # fmt: skip
    assert "did not complete" in page.inner_text("#glm-error")
    assert "outcome level" in page.inner_text("#glm-nodes")  # gamma's rule, said by gamma
    page.close()


def test_a_glm_over_a_saved_cohort_uses_only_its_individuals(fed) -> None:
    federation_, hub, frames = fed
    token = federation_.access_token()
    headers = {"authorization": f"Bearer {token}"}
    saved = httpx.post(
        f"{hub}/hub/cohorts",
        headers=headers,
        timeout=30,
        json={"name": "women 30+", "criteria": {"sex": "female", "min_age": 30}},
    )
    assert saved.status_code == 201, saved.text
    body = {"kind": "glm", "formula": "qt ~ age + bmi", "table": "measures",
            "cohort": saved.json()["id"]}  # fmt: skip
    job = analyse(hub, token, body)
    assert job["state"] == "succeeded", json.dumps(job, indent=1)[:3000]
    pooled = _pooled(frames)
    women = pooled[(pooled["sex"] == "female") & (pooled["age"] >= 30)]
    columns, model = _reference("qt ~ age + bmi", women, sm.families.Gaussian())
    _close(job["result"]["summary"]["coefficients"], columns, model)


def test_analyses_are_listed_for_their_owner_only_and_can_be_cancelled(fed) -> None:
    federation_, hub, _ = fed
    mine = {"authorization": f"Bearer {federation_.access_token()}"}
    theirs = {"authorization": f"Bearer {federation_.access_token('researcher-2')}"}
    body = {"kind": "glm", "formula": "case ~ age + sex + bmi + group", "family": "binomial",
            "table": "measures"}  # fmt: skip
    with httpx.Client(base_url=hub, timeout=30) as client:
        started = client.post("/hub/analyses", json=body, headers=mine).json()
        cancelled = client.post(f"/hub/analyses/{started['id']}/cancel", headers=mine)
        assert cancelled.status_code == 200
        for _ in range(300):
            job = client.get(f"/hub/analyses/{started['id']}", headers=mine).json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert job["state"] == "cancelled" and job["result"] is None
        listed = client.get("/hub/analyses", headers=mine).json()["analyses"]
        assert started["id"] in {a["id"] for a in listed}
        assert started["id"] not in {
            a["id"] for a in client.get("/hub/analyses", headers=theirs).json()["analyses"]
        }
        assert client.get(f"/hub/analyses/{started['id']}", headers=theirs).status_code == 404
        anonymous = client.post("/hub/analyses", json=body)
        assert anonymous.status_code == 401 and "send your token" in anonymous.text
        bad = client.post("/hub/analyses", json={**body, "formula": "case ~ poly(age)"},
                          headers=mine)  # fmt: skip
        assert bad.status_code == 400 and "poly() is not allowed" in bad.text


def test_the_analysis_docs_commands_run_against_a_federation(fed) -> None:
    """docs/analysis.md's first commands (written for the demo's hub) against this one."""
    federation_, hub, _ = fed
    text = (Path(__file__).parent.parent / "docs" / "analysis.md").read_text()
    block = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0]
    lines = [line for line in block.splitlines() if not line.startswith("export ")]
    assert lines and all(line.startswith(".venv/bin/genofed ") for line in lines)
    env = {"GENOFED_HUB": hub, "GENOFED_TOKEN": federation_.access_token()}
    for line in lines:
        done = run(*shlex.split(line)[1:], env=env)
        assert done.returncode == 0, (line, done.stderr)
    assert "Residual deviance" in run(*shlex.split(lines[0])[1:], env=env).stdout


def test_schemathesis_finds_no_server_errors_in_the_analysis_api(fed, tmp_path: Path) -> None:
    """Generated requests (from the node's own OpenAPI document) to every /analysis/v1
    endpoint, as a caller allowed to analyse: bad input is a 4xx, never a 5xx."""
    federation_, _, _ = fed
    base = federation_.nodes["beta"]
    passport = federation_.passport(audience=federation_.audience("beta"), hours=2)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", f"{base}/openapi.json",
         "--url", base, "--include-path-regex", "^/analysis/v1",
         "--checks", "not_a_server_error", "--max-examples", "60", "--seed", "1",
         "--workers", "1", "-H", f"Authorization: Bearer {passport}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "/analysis/v1/tasks" in result.stdout
