"""WES at a node, in process: the real app, real supervisors, engines and sandboxes (each
run is a bubblewrap process tree), real Passports with the node's own DAC grants. What a
run may not do is tried by canary workflows; each must be blocked or killed, and the
node left as it was."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.config import DacReviewer, load_config, save_config
from genofed.node.app import create_app
from genofed.wes import engines
from genofed.wes.airlock import check_table
from genofed.wes.runs import RunStore
from tests import wes_workflows as wf
from tests.governance import BROKER, GovernedNode, build_governed_node
from tests.test_cli_input import run

FINISHED = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


@pytest.fixture(scope="module")
def wes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    wf.need_bwrap()
    gov = build_governed_node(tmp_path_factory.mktemp("wes"))
    config = load_config(gov.node.config_path)
    config.workflows.custodians = [DacReviewer(sub="custodian-1", iss=BROKER)]
    save_config(config, gov.node.config_path)
    with TestClient(create_app(gov.node.root)) as client:
        yield {
            "gov": gov,
            "client": client,
            "owner": _auth(gov.passport("researcher-1", grants=("ctrl",))),
            "other": _auth(gov.passport("researcher-2", grants=("ctrl",))),
            "custodian": _auth(gov.passport("custodian-1")),
        }


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def approve(gov: GovernedNode, name: str, text: str, tmp: Path) -> None:
    path = tmp / name
    path.write_text(text)
    done = run("node", "workflow", "approve", str(gov.node.root), str(path))
    assert done.returncode == 0 and hashlib.sha256(text.encode()).hexdigest() in done.stderr


def submit(
    wes: dict[str, Any],
    attachments: dict[str, str],
    *,
    url: str | None = None,
    kind: tuple[str, str] = ("CWL", "v1.2"),
    params: dict[str, Any] | None = None,
    datasets: str | None = "ctrl",
    headers: dict[str, str] | None = None,
) -> Any:
    data = {"workflow_type": kind[0], "workflow_type_version": kind[1],
            "workflow_url": url or next(iter(attachments)),
            "workflow_params": json.dumps(params or {}),
            "tags": json.dumps({"datasets": datasets} if datasets else {})}  # fmt: skip
    files = [("workflow_attachment", (name, text.encode())) for name, text in attachments.items()]
    headers = wes["owner"] if headers is None else headers
    return wes["client"].post("/ga4gh/wes/v1/runs", headers=headers, data=data, files=files)


def wait(wes: dict[str, Any], run_id: str, until: set[str] = FINISHED, timeout_s: float = 120):
    end = time.monotonic() + timeout_s
    while True:
        log = wes["client"].get(f"/ga4gh/wes/v1/runs/{run_id}", headers=wes["owner"]).json()
        if log["state"] in until or time.monotonic() > end:
            return log
        time.sleep(0.1)


def started(wes: dict[str, Any], attachments: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    response = submit(wes, attachments, **kwargs)
    assert response.status_code == 200, response.text
    return wait(wes, response.json()["run_id"])


def held(wes: dict[str, Any], run_id: str, name: str) -> str:
    """An output as the custodian reads it in the airlock (the operator's side)."""
    folder = RunStore(wes["gov"].node.state_dir).folder(run_id)
    return (folder / "airlock" / "files" / name).read_text()


def review(wes: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A run's outputs as its node's custodian sees them (``/airlock/v1``)."""
    runs = wes["client"].get("/airlock/v1/runs", headers=wes["custodian"]).json()["runs"]
    return next(r["outputs"] for r in runs if r["run_id"] == run_id)


def fingerprint(root: Path) -> dict[str, str]:
    """Every file of the node but what runs and requests write (its runs, its audit)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.relative_to(root).parts[0] not in ("state", "audit")
        and "dac" not in p.relative_to(root).parts
    }


def test_an_approved_cwl_workflow_runs_and_its_table_waits_in_the_airlock(wes, tmp_path) -> None:
    """The allele-count table of a granted dataset: COMPLETE; the table is held, with the
    threshold rule named for its cells under 10; nothing downloads before a custodian
    releases it, and then exactly what was checked does."""
    approve(wes["gov"], "counts.cwl", wf.ALLELE_COUNTS, tmp_path)
    log = started(wes, {"counts.cwl": wf.ALLELE_COUNTS})
    assert log["state"] == "COMPLETE", log
    assert log["run_log"]["exit_code"] == 0 and log["run_log"]["cmd"][0].endswith("/cwltool")
    # the owner learns only how many outputs wait: their names, sizes and the checks'
    # findings were made by the run, and could carry data
    assert log["outputs"] == {} and log["airlock"] == {"held": 4, "released": 0, "rejected": 0}
    client, run_id = wes["client"], log["run_id"]
    table = review(wes, run_id)["allele-counts.tsv"]
    assert table["airlock"] == "held" and table["automatic"] == "failed"
    threshold = next(c for c in table["checks"] if c["rule"] == "threshold")
    assert not threshold["passed"] and "column ac" in threshold["detail"]
    url = f"/ga4gh/wes/v1/runs/{run_id}/outputs/allele-counts.tsv"
    refused = client.get(url, headers=wes["owner"])
    assert refused.status_code == 403 and "custodian must release" in refused.json()["msg"]
    stderr = client.get(log["run_log"]["stderr"], headers=wes["owner"])
    assert stderr.status_code == 403  # the engine's logs are outputs like any other

    # a researcher is not a custodian; the custodian releases, saying why
    path = f"/airlock/v1/runs/{run_id}/outputs/allele-counts.tsv/release"
    body = {"reason": "aggregate counts of a public reference panel"}
    assert client.post(path, headers=wes["owner"], json=body).status_code == 403
    queue = client.get("/airlock/v1/runs", headers=wes["custodian"]).json()
    assert any(r["run_id"] == run_id for r in queue["runs"])
    released = client.post(path, headers=wes["custodian"], json=body)
    assert released.status_code == 200 and released.json()["state"] == "released"
    got = client.get(url, headers=wes["owner"])
    assert got.status_code == 200 and got.text == held(wes, run_id, "allele-counts.tsv")
    listed = client.get(f"/ga4gh/wes/v1/runs/{run_id}", headers=wes["owner"]).json()
    assert list(listed["outputs"]) == ["allele-counts.tsv"] and listed["airlock"]["held"] == 3
    assert listed["outputs"]["allele-counts.tsv"]["url"] == url
    assert got.text.startswith("chrom\tpos\tref\talt\tac\tan\n") and got.text.count("\n") > 2
    assert client.get(url, headers=wes["other"]).status_code == 404  # not their run
    again = client.post(path, headers=wes["custodian"], json=body)
    assert again.status_code == 400 and "released already" in again.json()["msg"]

    # the operator lists what is held, reads it, and rejects the logs; the owner sees why
    listed = run("airlock", "list", str(wes["gov"].node.root)).stderr
    assert f"{run_id} │ logs/stderr.txt" in listed
    assert f"{run_id} │ allele-counts.tsv" not in listed  # released already
    shown = json.loads(run("airlock", "show", str(wes["gov"].node.root), run_id).stdout)
    assert {o["name"]: o["state"] for o in shown["outputs"]}["allele-counts.tsv"] == "released"
    rejected = run("airlock", "reject", str(wes["gov"].node.root), run_id, "logs/stderr.txt",
                   "--reason", "engine logs stay here")  # fmt: skip
    assert rejected.returncode == 0, rejected.stderr
    rejected = client.get(log["run_log"]["stderr"], headers=wes["owner"])
    assert rejected.status_code == 403 and "engine logs stay here" in rejected.json()["msg"]
    audit = (wes["gov"].node.root / "audit" / "audit.log").read_text()
    events = [json.loads(line).get("event") for line in audit.splitlines()]
    assert {"workflow-submit", "workflow-run", "airlock-check", "airlock-release",
            "airlock-reject"} <= set(events)  # fmt: skip


def test_a_table_with_a_cell_of_2_is_held_with_the_rule_named(wes, tmp_path) -> None:
    """Nothing downloads before the custodian's release, and the right bytes do after."""
    approve(wes["gov"], "groups.cwl", wf.SMALL_CELL, tmp_path)
    log = started(wes, {"groups.cwl": wf.SMALL_CELL}, datasets=None)
    assert log["state"] == "COMPLETE", log
    table = review(wes, log["run_id"])["groups.tsv"]
    threshold = next(c for c in table["checks"] if c["rule"] == "threshold")
    assert table["automatic"] == "failed"
    assert threshold == {"rule": "threshold", "passed": False,
                         "detail": "line 3, column n: 2 < 10"}  # fmt: skip
    client, run_id = wes["client"], log["run_id"]
    url = f"/ga4gh/wes/v1/runs/{run_id}/outputs/groups.tsv"
    for name in review(wes, run_id):  # no output of the run is downloadable yet
        response = client.get(f"/ga4gh/wes/v1/runs/{run_id}/outputs/{name}", headers=wes["owner"])
        assert response.status_code == 403, name
    released = run("airlock", "release", str(wes["gov"].node.root), run_id, "groups.tsv",
                   "--reason", "reviewed: the small cell is a test group")  # fmt: skip
    assert released.returncode == 0, released.stderr
    got = client.get(url, headers=wes["owner"])
    assert got.status_code == 200 and got.text == "group\tn\nA\t25\nB\t2\n"


def test_attachments_over_the_request_limit_are_refused(wes) -> None:
    limit = load_config(wes["gov"].node.config_path).max_request_bytes
    big = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS, "big.txt": "x" * (limit + 1)},
                 url="counts.cwl")  # fmt: skip
    assert big.status_code == 413, big.text
    assert "max_request_bytes" in big.text or "too large" in big.text.lower()


def test_a_workflow_not_approved_does_not_run(wes, tmp_path) -> None:
    """Neither an unapproved workflow nor an approved one with unapproved code attached;
    a changed byte is another workflow. Nothing is staged."""
    runs = RunStore(wes["gov"].node.state_dir).runs
    before = set(runs.iterdir()) if runs.is_dir() else set()
    refused = submit(wes, {"new.cwl": wf.ALLELE_COUNTS + "\n# changed\n"})
    assert refused.status_code == 403 and "genofed node workflow approve" in refused.json()["msg"]
    approve(wes["gov"], "counts.cwl", wf.ALLELE_COUNTS, tmp_path)
    files = fingerprint(wes["gov"].node.root)  # node.yaml as approved, from here on
    extra = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS, "helper.py": "print('hi')\n"})
    assert extra.status_code == 403 and "helper.py" in extra.json()["msg"]
    assert (set(runs.iterdir()) if runs.is_dir() else set()) == before
    assert fingerprint(wes["gov"].node.root) == files


@pytest.mark.parametrize(
    "name",
    [
        "../escape.cwl",
        "/etc/escape.cwl",
        "a/../../escape.cwl",
        "out/x.cwl",
        "",
        "./counts.cwl",
        "counts.cwl/",
        "a//b.cwl",
        "--parallel",
    ],
)
def test_attachments_that_would_escape_the_run_are_refused(wes, name) -> None:
    response = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS, name: "x"}, url="counts.cwl")
    assert response.status_code == 400, response.text
    assert not (wes["gov"].node.state_dir / "escape.cwl").exists()


def test_every_attachment_but_data_must_be_approved(wes, tmp_path) -> None:
    """An engine's configuration (a Snakemake profile) or a tool file is code; a table
    of data is not; nor may the parameters carry requirements of their own."""
    approve(wes["gov"], "counts.cwl", wf.ALLELE_COUNTS, tmp_path)
    profile = "default-resources: [\"mem_mb=__import__('os').system('id')\"]\n"
    config = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS,
                          "profiles/default/config.yaml": profile}, url="counts.cwl")  # fmt: skip
    assert config.status_code == 403 and "profiles/default/config.yaml" in config.json()["msg"]
    data = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS, "regions.tsv": "chrom\tstart\n"},
                  url="counts.cwl")  # fmt: skip
    assert data.status_code == 200, data.text
    smuggled = {"cwl:requirements": [{"class": "EnvVarRequirement",
                                      "envDef": {"LD_PRELOAD": "/workflow/x.so"}}]}  # fmt: skip
    refused = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS}, params=smuggled)
    assert refused.status_code == 400 and "cwl:requirements" in refused.json()["msg"]


def test_what_the_request_names_must_exist_here(wes, tmp_path) -> None:
    approve(wes["gov"], "counts.cwl", wf.ALLELE_COUNTS, tmp_path)
    cases = {
        "https://example.org/wf.cwl": "fetches nothing",
        "missing.cwl": "not one of the attachments",
    }
    for url, said in cases.items():
        response = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS}, url=url)
        assert response.status_code == 400 and said in response.json()["msg"]
    wrong = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS}, kind=("NEXTFLOW", "22"))
    assert wrong.status_code == 400 and "it offers CWL" in wrong.json()["msg"]
    closed = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS}, datasets="open")
    assert closed.status_code == 403 and "no dataset 'open'" in closed.json()["msg"]
    anonymous = submit(wes, {"counts.cwl": wf.ALLELE_COUNTS}, headers={})
    assert anonymous.status_code == 403 and "Passport" in anonymous.json()["msg"]


def test_a_run_has_no_network(wes, tmp_path) -> None:
    """A listener on the node's 127.0.0.1 is not reachable from the sandbox."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)
    port = listener.getsockname()[1]
    accepted: list[Any] = []

    def accept() -> None:
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    canary = wf.network_canary(port)
    approve(wes["gov"], "net.cwl", canary, tmp_path)
    before = fingerprint(wes["gov"].node.root)
    log = started(wes, {"net.cwl": canary})
    listener.close()
    thread.join()
    assert accepted == []
    assert log["state"] == "EXECUTOR_ERROR", log
    # the sandbox has a loopback of its own, where nothing listens
    assert "ConnectionRefusedError" in held(wes, log["run_id"], "logs/stderr.txt")
    assert fingerprint(wes["gov"].node.root) == before


def test_a_run_writes_nothing_outside_its_directory(wes, tmp_path) -> None:
    root = wes["gov"].node.root
    targets = [str(root / "node.yaml"), str(root / "keys" / "planted"), "/etc/genofed-canary",
               "/usr/genofed-canary", "/genofed-canary", "/data/ctrl/planted"]  # fmt: skip
    canary = wf.write_canary(targets)
    approve(wes["gov"], "write.cwl", canary, tmp_path)
    before = fingerprint(root)
    log = started(wes, {"write.cwl": canary})
    assert log["state"] == "COMPLETE", log  # it exits 1 if any write worked
    outcome = json.loads(held(wes, log["run_id"], "result.txt"))
    assert set(outcome) == set(targets) and "written" not in outcome.values(), outcome
    assert fingerprint(root) == before
    for target in targets[2:5]:
        assert not Path(target).exists()


def test_links_a_run_leaves_are_not_followed_out_of_it(wes, tmp_path) -> None:
    """Links to the node's files, where the supervisor writes and in out/, and a loop
    named with data: the node is unchanged, no link becomes an output, and no message
    repeats a name the run chose."""
    root = wes["gov"].node.root
    canary = wf.link_canary(str(root))
    approve(wes["gov"], "links.cwl", canary, tmp_path)
    before = fingerprint(root)
    log = started(wes, {"links.cwl": canary})
    assert log["state"] == "COMPLETE", log
    assert fingerprint(root) == before
    outputs = review(wes, log["run_id"])
    assert not {"config.yaml", "relative.yaml", "secret-ALICE-BRCA1"} & set(outputs)
    assert json.loads(held(wes, log["run_id"], "wes-outputs.json"))["result"]["class"] == "File"
    logs = " ".join(log["run_log"]["system_logs"])
    assert "3 entries of out/ were left out" in logs and "ALICE" not in logs


def test_a_run_sees_only_the_datasets_it_was_granted(wes, tmp_path) -> None:
    root = wes["gov"].node.root
    catalog = json.loads((root / "catalog.json").read_text())["datasets"]
    open_db = root / "datasets" / "open" / catalog["open"]["version"] / "dataset.duckdb"
    targets = ["/data/ctrl/dataset.duckdb", "/data/open/dataset.duckdb", str(open_db),
               str(root / "keys" / "dac-signing.json"), str(root / "audit" / "audit.log"),
               str(root / "node.yaml")]  # fmt: skip
    assert all(Path(t).exists() for t in targets[2:])  # they are there, outside
    canary = wf.read_canary(targets)
    approve(wes["gov"], "read.cwl", canary, tmp_path)
    before = fingerprint(root)
    log = started(wes, {"read.cwl": canary})
    assert log["state"] == "COMPLETE", log
    outcome = json.loads(held(wes, log["run_id"], "result.txt"))
    assert outcome.pop("/data/ctrl/dataset.duckdb") == "read"  # the granted one
    assert set(outcome.values()) == {"FileNotFoundError"}, outcome
    assert fingerprint(root) == before


def _limits(gov: GovernedNode, **limits: int) -> None:
    config = load_config(gov.node.config_path)
    for name, value in limits.items():
        setattr(config.workflows, name, value)
    save_config(config, gov.node.config_path)


def test_a_run_over_its_memory_or_time_is_stopped(wes, tmp_path) -> None:
    gov = wes["gov"]
    approve(gov, "memory.cwl", wf.MEMORY_CANARY, tmp_path)
    approve(gov, "sleep.cwl", wf.SLEEPER, tmp_path)
    _limits(gov, memory_mb=1024, wall_s=3)
    before = fingerprint(gov.node.root)
    try:
        memory = started(wes, {"memory.cwl": wf.MEMORY_CANARY})
        sleeper = started(wes, {"sleep.cwl": wf.SLEEPER})
        assert fingerprint(gov.node.root) == before
    finally:
        _limits(gov, memory_mb=4096, wall_s=3600)
    assert memory["state"] == "EXECUTOR_ERROR", memory
    assert any("ran out of memory: its limit is 1024 MB" in s
               for s in memory["run_log"]["system_logs"])  # fmt: skip
    assert sleeper["state"] == "EXECUTOR_ERROR", sleeper
    assert any("wall-time limit of 3 s" in s for s in sleeper["run_log"]["system_logs"])


def test_runs_queue_for_a_slot_and_can_be_cancelled(wes, tmp_path) -> None:
    gov, client = wes["gov"], wes["client"]
    approve(gov, "sleep.cwl", wf.SLEEPER, tmp_path)
    _limits(gov, concurrent_runs=1)
    try:
        first = submit(wes, {"sleep.cwl": wf.SLEEPER}).json()["run_id"]
        assert wait(wes, first, {"RUNNING"})["state"] == "RUNNING"
        second = submit(wes, {"sleep.cwl": wf.SLEEPER}).json()["run_id"]
        time.sleep(1)
        status = client.get(f"/ga4gh/wes/v1/runs/{second}/status", headers=wes["owner"]).json()
        assert status == {"run_id": second, "state": "QUEUED"}
        for run_id in (second, first):
            cancel = client.post(f"/ga4gh/wes/v1/runs/{run_id}/cancel", headers=wes["owner"])
            assert cancel.json() == {"run_id": run_id}
        assert wait(wes, second)["state"] == "CANCELED"
        assert wait(wes, first)["state"] == "CANCELED"
    finally:
        _limits(gov, concurrent_runs=4)


def test_a_run_whose_supervisor_dies_is_preempted(wes, tmp_path) -> None:
    approve(wes["gov"], "sleep.cwl", wf.SLEEPER, tmp_path)
    run_id = submit(wes, {"sleep.cwl": wf.SLEEPER}).json()["run_id"]
    assert wait(wes, run_id, {"RUNNING"})["state"] == "RUNNING"
    record = RunStore(wes["gov"].node.state_dir).load(run_id)
    assert record.supervisor is not None
    os.kill(record.supervisor, signal.SIGKILL)
    log = wait(wes, run_id, timeout_s=30)
    assert log["state"] == "PREEMPTED" and "submit it again" in log["run_log"]["system_logs"][-2]


def test_a_caller_sees_only_their_own_runs(wes, tmp_path) -> None:
    approve(wes["gov"], "counts.cwl", wf.ALLELE_COUNTS, tmp_path)
    run_id = started(wes, {"counts.cwl": wf.ALLELE_COUNTS})["run_id"]
    client = wes["client"]
    mine = client.get("/ga4gh/wes/v1/runs", headers=wes["owner"]).json()["runs"]
    assert run_id in [r["run_id"] for r in mine]
    theirs = client.get("/ga4gh/wes/v1/runs", headers=wes["other"]).json()["runs"]
    assert run_id not in [r["run_id"] for r in theirs]
    for path in ("", "/status", "/tasks", "/tasks/engine"):
        response = client.get(f"/ga4gh/wes/v1/runs/{run_id}{path}", headers=wes["other"])
        assert response.status_code == 404, path
    assert (
        client.post(f"/ga4gh/wes/v1/runs/{run_id}/cancel", headers=wes["other"]).status_code == 404
    )
    tasks = client.get(f"/ga4gh/wes/v1/runs/{run_id}/tasks", headers=wes["owner"]).json()
    assert [t["id"] for t in tasks["task_logs"]] == ["engine"] and tasks["next_page_token"] == ""
    paged = client.get("/ga4gh/wes/v1/runs", headers=wes["owner"], params={"page_size": 1})
    assert len(paged.json()["runs"]) == 1
    if len(mine) > 1:
        token = paged.json()["next_page_token"]
        after = client.get("/ga4gh/wes/v1/runs", headers=wes["owner"],
                           params={"page_size": 1, "page_token": token}).json()  # fmt: skip
        assert after["runs"][0]["run_id"] == mine[1]["run_id"]


@pytest.mark.parametrize("engine", ["miniwdl", "snakemake"])
def test_wdl_and_snakemake_workflows_run_too(wes, tmp_path, engine) -> None:
    if engine not in {e.name for e in engines.present()}:
        pytest.fail(f"{engine} is a dependency of genofed and should be installed")
    table = "a\nb\nc\n"
    if engine == "miniwdl":
        approve(wes["gov"], "lines.wdl", wf.WDL_LINES, tmp_path)
        log = started(wes, {"lines.wdl": wf.WDL_LINES, "table.txt": table}, kind=("WDL", "1.0"),
                      params={"table": "table.txt"}, datasets=None)  # fmt: skip
        name = "lines/lines.txt"
    else:
        approve(wes["gov"], "Snakefile", wf.SNAKEFILE, tmp_path)
        log = started(wes, {"Snakefile": wf.SNAKEFILE, "table.txt": table}, kind=("SMK", "9"),
                      params={"table": "table.txt"}, datasets=None)  # fmt: skip
        name = "lines.tsv"
    assert log["state"] == "COMPLETE", (log, held(wes, log["run_id"], "logs/stderr.txt"))
    assert name in review(wes, log["run_id"])
    assert held(wes, log["run_id"], name).split()[-1] == "3"


def test_the_airlock_rules_are_acros() -> None:
    """Each rule, on cells that fail and pass it (ACRO's defaults)."""
    from genofed.config import AirlockRules

    rules = AirlockRules()

    def failed(table: str) -> set[str]:
        return {c.rule for c in check_table(table.encode(), "\t", rules) if not c.passed}

    assert failed("group\tn\nA\t12\nB\t10\n") == set()
    assert failed("group\tn\nA\t12\nB\t2\n") == {"threshold"}
    assert failed("group\tcount\nA\t12\nB\t0\n") == {"zeros"}
    assert failed("pos\tmean\n1\t2.5\n") == set()  # neither column is a count
    assert failed("model\tdf_resid\nm\t4\n") == {"dof"}
    # dominance: a total of 100 whose two largest contributions are 60 and 35
    assert failed("g\tincome\tincome_top1\tincome_top2\nA\t100\t60\t35\n") == {"p-ratio", "nk-rule"}
    assert failed("g\tincome\tincome_top1\tincome_top2\nA\t100\t20\t15\n") == set()
    # a plink2-style header, VCF-style meta lines, a byte-order mark, spaces in names
    assert failed("##meta\n#CHROM\tPOS\tn\n22\t100\t3\n") == {"threshold"}
    assert failed("\ufeffn \tgroup\n3\tA\n") == {"threshold"}
    assert check_table(b"##only\n##meta lines\n", "\t", rules) == []  # for review
    assert check_table(b"n\tnote\n3\t" + b"x" * 200_000 + b"\n", "\t", rules) == []
    assert failed("n\tgroup\n12\tA\n#3\tB\n2\tC\n") == {"threshold"}  # no row hides
    strict = AirlockRules(check_missing_values=True, zeros_are_disclosive=False)
    checks = {c.rule: c.passed for c in check_table(b"g,n\nA,\nB,0\n", ",", strict)}
    assert checks["missing"] is False and "zeros" not in checks
