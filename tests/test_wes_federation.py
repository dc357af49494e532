"""One workflow at every node through the hub, with real processes: a broker, three nodes
and a hub. Two nodes approved the workflow and one did not; each node's custodian decides
on its own outputs; the hub shows the runs side by side and fetches what was released."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import httpx
import pytest

from genofed.config import NodeConfig
from genofed.store.node_dir import NodeDir
from genofed.wes.runs import RunStore
from tests import wes_workflows as wf
from tests.browser import needs_chromium
from tests.federation import federation
from tests.test_cli_input import run

pytestmark = pytest.mark.servers

WORKFLOW = resources.files("genofed") / "data" / "workflows" / "allele-frequencies.cwl"


def _registered_may_run(config: NodeConfig) -> None:
    config.workflows.who = "registered"


@pytest.fixture(scope="module")
def wes_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    wf.need_bwrap()
    root = tmp_path_factory.mktemp("wes-federation")
    with federation(root) as fed:
        for name, seed in (("alpha", 1), ("beta", 2), ("gamma", 3)):
            fed.add_node(name, seed=seed, samples=40, configure=_registered_may_run)
        workflow = root / "allele-frequencies.cwl"
        workflow.write_text(WORKFLOW.read_text())
        for name in ("alpha", "beta"):  # gamma's operator has not approved it
            run("node", "workflow", "approve", str(root / name), str(workflow))
        yield {"fed": fed, "hub": fed.start_hub(), "workflow": workflow, "root": root}


def test_the_hub_runs_a_workflow_at_every_node_and_collects_released_outputs(wes_fed) -> None:
    fed, hub, root = wes_fed["fed"], wes_fed["hub"], wes_fed["root"]
    headers = {"authorization": f"Bearer {fed.access_token()}"}
    params = {"database": "/data/{dataset}/dataset.duckdb", "chrom": "22", "start": 1,
              "end": 100_000_000}  # fmt: skip
    datasets = ",".join(f"{n}:{n}-cohort" for n in ("alpha", "beta", "gamma"))
    data = {"workflow_type": "CWL", "workflow_type_version": "v1.2",
            "workflow_url": "allele-frequencies.cwl", "workflow_params": json.dumps(params),
            "datasets": datasets}  # fmt: skip
    files = {"workflow_attachment": ("allele-frequencies.cwl", wes_fed["workflow"].read_bytes())}
    with httpx.Client(base_url=hub, headers=headers, timeout=60) as client:
        started = client.post("/hub/workflows", data=data, files=files)
        assert started.status_code == 200, started.text
        workflow = started.json()
        assert set(workflow["runs"]) == {"alpha", "beta", "gamma"}
        assert "approve" in workflow["runs"]["gamma"]["detail"]  # gamma's own words
        end = time.monotonic() + 120
        while True:
            shown = client.get(f"/hub/workflows/{workflow['id']}").json()["nodes"]
            if all(shown[n].get("state") == "COMPLETE" for n in ("alpha", "beta")):
                break
            assert time.monotonic() < end, shown
            time.sleep(0.3)
        for name in ("alpha", "beta"):  # how many wait, and nothing more
            assert shown[name]["outputs"] == {} and shown[name]["airlock"]["held"] == 4
        alpha_run = shown["alpha"]["run_id"]
        run("airlock", "release", str(root / "alpha"), alpha_run, "allele-frequencies.tsv",
            "--reason", "frequencies of common variants")  # fmt: skip
        after = client.get(f"/hub/workflows/{workflow['id']}").json()["nodes"]
        assert after["alpha"]["outputs"]["allele-frequencies.tsv"]["airlock"] == "released"
        assert after["alpha"]["airlock"]["held"] == 3 and after["beta"]["outputs"] == {}

        base = f"/hub/workflows/{workflow['id']}/nodes"
        got = client.get(f"{base}/alpha/outputs/allele-frequencies.tsv")
        assert got.status_code == 200, got.text
        held = RunStore(NodeDir(root / "alpha").state_dir).folder(alpha_run)
        assert got.text == (held / "airlock" / "files" / "allele-frequencies.tsv").read_text()
        rows = got.text.splitlines()
        assert rows[0].split("\t") == ["chrom", "pos", "ref", "alt", "ac", "an", "af"]
        assert len(rows) > 10
        ac, an, af = (float(x) for x in rows[1].split("\t")[4:7])
        assert af == pytest.approx(ac / an, abs=1e-6)
        refused = client.get(f"{base}/beta/outputs/allele-frequencies.tsv")
        assert refused.status_code == 403 and "custodian must release" in refused.text
        listed = client.get("/hub/workflows").json()["workflows"]
        assert workflow["id"] in [w["id"] for w in listed]
    other = {"authorization": f"Bearer {fed.access_token('researcher-2')}"}
    assert httpx.get(f"{hub}/hub/workflows/{workflow['id']}", headers=other).status_code == 404


@needs_chromium
def test_the_portal_lists_each_nodes_run_and_its_airlock_states(wes_fed, browser: Any) -> None:
    """After the hub test: alpha's table released (a download link) and its logs held,
    beta's four outputs held (counted, not named), gamma's refusal in its own words."""
    fed, hub = wes_fed["fed"], wes_fed["hub"]
    page = browser.new_page()
    page.goto(hub)
    page.fill("#token", fed.access_token())
    page.dispatch_event("#token", "change")
    page.wait_for_selector("#workflows-list table.workflow", timeout=30_000)
    alpha = "#workflows-list tr[data-node='alpha']"
    assert "COMPLETE" in page.inner_text(alpha)
    link = f"{alpha} [data-output='allele-frequencies.tsv'] a"
    assert page.inner_text(link) == "allele-frequencies.tsv"
    assert page.get_attribute(f"{alpha} [data-held]", "data-held") == "3"
    beta = "#workflows-list tr[data-node='beta']"
    assert page.locator(f"{beta} [data-output]").count() == 0
    assert page.get_attribute(f"{beta} [data-held]", "data-held") == "4"
    assert "approve" in page.inner_text("#workflows-list tr[data-node='gamma']")
    with page.expect_download(timeout=90_000) as download:  # through the hub, as the caller
        page.click(link)
    assert download.value.path().read_text().startswith("chrom\tpos\tref\talt\tac\tan\taf\n")
    page.close()
