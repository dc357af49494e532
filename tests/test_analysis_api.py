"""The node's ``/analysis/v1`` in process: the catalogue, who may run tasks (grant holders
by default, registered researchers where node.yaml says so), the daily budget per
dataset, and the errors bad requests get."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from genofed.config import DatasetPolicy, load_config, save_config
from genofed.node.app import create_app
from genofed.store.ontology import OntologyIndex
from tests.governance import GovernedNode, build_governed_node

DESCRIBE = {"analysis": "describe", "params": {"variables": ["bmi", "age"]}}


@pytest.fixture
def governed(tmp_path: Path) -> GovernedNode:
    return build_governed_node(tmp_path)


def _edit(gov: GovernedNode, change: Any) -> None:
    config = load_config(gov.node.config_path)
    change(config)
    save_config(config, gov.node.config_path)
    time.sleep(0.01)  # a new mtime: the node reloads node.yaml on the next request


def _finished(client: TestClient, headers: dict[str, str], task: dict[str, Any]) -> dict:
    for _ in range(200):
        if task["state"] not in ("queued", "running"):
            return task
        time.sleep(0.02)
        task = client.get(f"/analysis/v1/tasks/{task['id']}", headers=headers).json()
    raise AssertionError(task)


def test_the_catalogue_describes_each_analysis_with_a_json_schema(
    governed: GovernedNode, ontology: OntologyIndex
) -> None:
    with TestClient(create_app(governed.node.root, ontology=ontology)) as client:
        body = client.get("/analysis/v1/catalogue").json()
    names = {a["name"]: a for a in body["analyses"]}
    assert set(names) == {"glm", "describe", "table", "gwas", "pca", "learn"}
    for analysis in names.values():
        Draft202012Validator.check_schema(analysis["parameters"])
        assert analysis["version"] and analysis["rules"]
    assert body["rules"] == {"nfilter.tab": 3, "nfilter.glm": 0.33, "nfilter.subset": 3,
                             "min_n": 10, "min_mac": 3, "max_training_rounds": 1000}  # fmt: skip
    assert body["minParticipants"] == 3


def test_grant_holders_by_default_and_registered_researchers_where_allowed(
    governed: GovernedNode, ontology: OntologyIndex
) -> None:
    registered = {"authorization": f"Bearer {governed.passport(bona_fide=True)}"}
    granted = {"authorization": f"Bearer {governed.passport('holder', grants=('ctrl',))}"}
    with TestClient(create_app(governed.node.root, ontology=ontology)) as client:
        refused = client.post("/analysis/v1/tasks", json={**DESCRIBE, "dataset": "open"},
                              headers=registered)  # fmt: skip
        assert refused.status_code == 403
        assert "need a grant" in refused.json()["errors"][0]["detail"]
        anonymous = client.post("/analysis/v1/tasks", json={**DESCRIBE, "dataset": "open"})
        assert anonymous.status_code == 403

        started = client.post("/analysis/v1/tasks", json=DESCRIBE, headers=granted)
        assert started.status_code == 202, started.text  # the only dataset they may analyse
        assert started.headers["location"] == f"/analysis/v1/tasks/{started.json()['id']}"
        task = _finished(client, granted, started.json())
        # six people: below min_n, so the whole payload is withheld, and says why
        assert task["state"] == "succeeded" and task["result"]["released"] is False
        assert task["result"]["dataset"] == "ctrl" and task["result"]["secure"] is None
        failed = [r for r in task["result"]["rules"] if not r["passed"]]
        assert [r["rule"] for r in failed] == ["min_n"]
        other = client.get(f"/analysis/v1/tasks/{task['id']}", headers=registered)
        assert other.status_code == 404  # someone else's task does not exist for them

        _edit(governed, lambda c: c.datasets.__setitem__(
            "open", DatasetPolicy(analysis="registered")))  # fmt: skip
        allowed = client.post("/analysis/v1/tasks", json={**DESCRIBE, "dataset": "open"},
                              headers=registered)  # fmt: skip
        assert allowed.status_code == 202, allowed.text
        task = _finished(client, registered, allowed.json())
        assert task["result"]["dataset"] == "open"
    log = governed.node.audit_path.read_text().splitlines()
    tasks = [json.loads(line) for line in log if '"analysis-task"' in line]
    assert [(t["dataset"], t["decision"]) for t in tasks] == [("ctrl", "withheld"),
                                                             ("open", "withheld")]  # fmt: skip
    assert tasks[0]["caller"]["sub"] == "holder" and tasks[0]["params"]


def test_a_caller_has_a_daily_budget_of_analysis_steps_per_dataset(
    governed: GovernedNode, ontology: OntologyIndex
) -> None:
    def configure(config: Any) -> None:
        config.analysis.budget_per_day = 2
        config.datasets["open"] = DatasetPolicy(analysis="registered")
        config.datasets["reg"] = DatasetPolicy(analysis="registered")

    _edit(governed, configure)
    registered = {"authorization": f"Bearer {governed.passport(bona_fide=True)}"}
    with TestClient(create_app(governed.node.root, ontology=ontology)) as client:
        for _ in range(2):
            ok = client.post("/analysis/v1/tasks", json={**DESCRIBE, "dataset": "open"},
                             headers=registered)  # fmt: skip
            assert ok.status_code == 202
        spent = client.post("/analysis/v1/tasks", json={**DESCRIBE, "dataset": "open"},
                            headers=registered)  # fmt: skip
        assert spent.status_code == 429
        assert "2 analyses on this dataset" in spent.json()["errors"][0]["detail"]
        other = client.post("/analysis/v1/tasks", json={**DESCRIBE, "dataset": "reg"},
                            headers=registered)  # fmt: skip
        assert other.status_code == 202  # another dataset: its own budget
        # the steps of one analysis (one hub job id) count once
        for _ in range(3):
            step = client.post(
                "/analysis/v1/tasks",
                headers=registered,
                json={**DESCRIBE, "dataset": "reg", "job": "analysis-0123abcd"},
            )
            assert step.status_code == 202, step.text  # fmt: skip
        again = client.post(
            "/analysis/v1/tasks",
            headers=registered,
            json={**DESCRIBE, "dataset": "reg", "job": "analysis-4567abcd"},
        )
        assert again.status_code == 429  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"analysis": "nope"}, 400, "no vetted analysis"),
        ({"analysis": "glm", "params": {"step": "fit"}}, 400, "formula"),
        (
            {"analysis": "glm", "params": {"step": "fit", "formula": "y ~ __import__('os')"}},
            400,
            "may use variable names",
        ),  # fmt: skip
        (
            {"analysis": "glm", "params": {"step": "fit", "formula": "y ~ scale(x)"}},
            400,
            "scale() is not allowed",
        ),  # fmt: skip
        ({"analysis": "glm", "version": "9.9", "params": {}}, 400, "not 9.9"),
        ({"analysis": "describe", "params": {"variables": []}}, 400, "variables"),
        ({**DESCRIBE, "dataset": "nowhere"}, 403, "no dataset 'nowhere'"),
        (
            {**DESCRIBE, "secure": {"task": "short", "round": 0, "participants": ["a"]}},
            400,
            "task",
        ),  # fmt: skip
    ],
)
def test_bad_requests_say_what_is_wrong(
    governed: GovernedNode, ontology: OntologyIndex, body: dict, status: int, needle: str
) -> None:
    headers = {"authorization": f"Bearer {governed.passport('holder', grants=('ctrl',))}"}
    with TestClient(create_app(governed.node.root, ontology=ontology)) as client:
        reply = client.post("/analysis/v1/tasks", json=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert needle in reply.text
