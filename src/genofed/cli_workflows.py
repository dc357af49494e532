"""``genofed node workflow`` (which workflows may run at a node) and ``genofed airlock``
(what their runs made, held until the custodian releases it)."""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from genofed._exceptions import GenofedError
from genofed.cli_output import console, fail
from genofed.config import ApprovedWorkflow, load_config, save_config
from genofed.store.node_dir import NodeDir

NodeDirArg = Annotated[Path, typer.Argument(help="The node directory")]

workflow_app = typer.Typer(
    help="The workflows this node runs (GA4GH WES): only those its operator approved, by the "
    "sha256 of their file.",
    no_args_is_help=True,
)
airlock_app = typer.Typer(
    help="Workflow outputs held at this node: nothing leaves before the custodian releases "
    "it. Automatic checks (ACRO's rules) run first; you decide.",
    no_args_is_help=True,
)


@workflow_app.command("approve")
def approve(
    directory: NodeDirArg,
    file: Annotated[Path, typer.Argument(help="The workflow file you read (CWL, WDL, Snakefile)")],
    note: Annotated[str | None, typer.Option(help="What you checked, for the record")] = None,
) -> None:
    """Approve a workflow file (after reading it): runs whose workflow file has exactly
    this content may run here. A changed file is a new workflow, to approve again."""
    node = NodeDir(directory)
    config = load_config(node.config_path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    config.workflows.approved[digest] = ApprovedWorkflow(
        name=file.name, approved=datetime.now(UTC).isoformat(timespec="seconds"), note=note
    )
    save_config(config, node.config_path)
    console.print(f"approved {file.name}: sha256 {digest}")


@workflow_app.command("list")
def list_workflows(directory: NodeDirArg) -> None:
    """The approved workflows, by sha256."""
    config = load_config(NodeDir(directory).config_path)
    if not config.workflows.approved:
        console.print("no workflow is approved: `genofed node workflow approve DIR FILE`")
    for digest, approved in config.workflows.approved.items():
        typer.echo(f"{digest}  {approved.name}  {approved.approved}  {approved.note or ''}")


@workflow_app.command("revoke")
def revoke(
    directory: NodeDirArg,
    digest: Annotated[str, typer.Argument(help="The sha256 that `list` shows")],
) -> None:
    """Withdraw an approval: no new run of that workflow starts (runs under way go on)."""
    node = NodeDir(directory)
    config = load_config(node.config_path)
    if config.workflows.approved.pop(digest, None) is None:
        raise fail(GenofedError(f"no approved workflow has sha256 {digest}"))
    save_config(config, node.config_path)
    console.print(f"revoked {digest}")


def _airlock(directory: Path):
    from genofed.wes.airlock import Airlock
    from genofed.wes.runs import RunStore

    return RunStore(NodeDir(directory).state_dir), Airlock.of_node(directory)


@airlock_app.command("list")
def airlock_list(
    directory: NodeDirArg,
    state: Annotated[str | None, typer.Option(help="held, released or rejected")] = "held",
) -> None:
    """Outputs waiting for a decision (--state held, the default), or decided ones."""
    from rich.table import Table

    store, airlock = _airlock(directory)
    table = Table(title=f"Outputs in the airlock ({state or 'all'})")
    for column in ("run", "output"):  # whole, to paste into `show` and `release`
        table.add_column(column, no_wrap=True)
    for column in ("size", "checks", "state"):  # whose run it is: `show`
        table.add_column(column)
    for record in store.all():
        for output in airlock.outputs(record.run_id) if record.state.finished else []:
            if state is None or output.state == state:
                failed = [c.rule for c in output.checks if not c.passed]
                checks = output.automatic + (f" ({', '.join(failed)})" if failed else "")
                table.add_row(record.run_id, output.name, f"{output.size:,}", checks,
                              output.state)  # fmt: skip
    console.print(table, width=max(console.width, 110))


@airlock_app.command("show")
def airlock_show(
    directory: NodeDirArg,
    run_id: Annotated[str, typer.Argument(help="The run, as `list` names it")],
    name: Annotated[str | None, typer.Argument(help="One output: print its content")] = None,
) -> None:
    """A run's outputs and each check's finding; with NAME, that output's content (to
    read before deciding)."""
    store, airlock = _airlock(directory)
    record = store.load(run_id)
    outputs = airlock.outputs(run_id)
    if name is None:
        typer.echo(json.dumps({"run": run_id, "owner": record.caller, "state": record.state.value,
                               "workflow": record.digest, "datasets": record.datasets,
                               "outputs": [o.as_json() for o in outputs]}, indent=1))  # fmt: skip
        return
    if name not in {o.name for o in outputs}:
        raise fail(GenofedError(f"run {run_id} has no output {name!r}"))
    typer.echo((store.folder(run_id) / "airlock" / "files" / name).read_text(errors="replace"))


def _decide(directory: Path, run_id: str, name: str, decision: str, reason: str, by: str | None):
    _, airlock = _airlock(directory)
    who = by or f"operator {getpass.getuser()}@{socket.gethostname()}"
    try:
        output = airlock.decide(run_id, name, decision, who, reason)  # type: ignore[arg-type]
    except GenofedError as err:
        raise fail(err) from None
    console.print(f"{output.name} of {run_id}: {output.state} by {who}")


Reason = Annotated[str, typer.Option(help="Why: kept in the audit log")]
By = Annotated[str | None, typer.Option(help="Who decides (default: you, as operator)")]
RunArg = Annotated[str, typer.Argument(help="The run")]
OutputArg = Annotated[str, typer.Argument(help="The output, as `list` names it")]


@airlock_app.command("release")
def airlock_release(
    directory: NodeDirArg, run_id: RunArg, name: OutputArg, reason: Reason, by: By = None
) -> None:
    """Release a held output: its run's owner can then download it."""
    _decide(directory, run_id, name, "released", reason, by)


@airlock_app.command("reject")
def airlock_reject(
    directory: NodeDirArg, run_id: RunArg, name: OutputArg, reason: Reason, by: By = None
) -> None:
    """Reject a held output: it never leaves the node; its owner sees why."""
    _decide(directory, run_id, name, "rejected", reason, by)
