"""``genofed query`` and ``genofed cohort``: ask a hub, print rich tables.

The hub is ``--hub`` or ``$GENOFED_HUB`` (default http://127.0.0.1:8700); a Passport or
access token comes from ``--token`` or ``$GENOFED_TOKEN`` (none: anonymous).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from genofed._exceptions import HubRequestError
from genofed.cli_output import console, fail

out = Console()  # results go to stdout, messages to stderr
query_app = typer.Typer(help="Ask a hub: federated Beacon and Data Connect.", no_args_is_help=True)
cohort_app = typer.Typer(
    help="Virtual cohorts: count criteria at every node, save them.", no_args_is_help=True
)

Hub = Annotated[str, typer.Option(envvar="GENOFED_HUB", help="The hub's base URL")]
Token = Annotated[
    str | None,
    typer.Option(envvar="GENOFED_TOKEN", help="Passport or access token (default: anonymous)"),
]
Deadline = Annotated[float | None, typer.Option(help="Seconds the hub may wait for the nodes")]


def call_hub(
    hub: str,
    method: str,
    path: str,
    token: str | None,
    deadline: float | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if deadline is not None:
        headers["Genofed-Deadline"] = str(deadline)
    try:
        response = httpx.request(
            method, hub.rstrip("/") + path, headers=headers, timeout=130, **kwargs
        )
    except httpx.HTTPError as exc:
        raise HubRequestError(f"could not reach the hub at {hub} ({type(exc).__name__})") from None
    if response.status_code == 204:  # done, nothing to say (a delete)
        return {}
    try:
        body = response.json()
    except json.JSONDecodeError:
        raise HubRequestError(
            f"the hub answered HTTP {response.status_code} without JSON"
        ) from None
    if response.status_code >= 400:
        error = body.get("error") or (body.get("errors") or [{}])[0]
        message = error.get("errorMessage") or error.get("detail") or response.text[:300]
        code = error.get("code")
        raise HubRequestError(
            f"HTTP {response.status_code}{f' ({code})' if code else ''}: {message}"
        )
    return body


def call_hub_bytes(hub: str, path: str, token: str | None) -> bytes:
    """A file the hub serves (an analysis's table or plot), as bytes."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(hub.rstrip("/") + path, headers=headers, timeout=130)
    except httpx.HTTPError as exc:
        raise HubRequestError(f"could not reach the hub at {hub} ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise HubRequestError(f"HTTP {response.status_code} for {path}")
    return response.content


def _nodes_table(nodes: list[dict[str, Any]], title: str = "Nodes") -> Table:
    table = Table(title=title)
    for column in ("node", "status", "ms", "detail"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    colours = {"ok": "green", "skipped": "yellow"}
    for node in nodes:
        colour = colours.get(node["status"], "red")
        ms = node.get("ms")
        table.add_row(
            node["node"],
            f"[{colour}]{node['status']}[/]",
            "" if ms is None else f"{ms:.0f}",
            node.get("detail") or "",
        )
    return table


@query_app.command("beacon")
def query_beacon(
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    entry: Annotated[str, typer.Option(help="g_variants, individuals, biosamples, ...")] = (
        "g_variants"
    ),
    chrom: Annotated[str | None, typer.Option(help="referenceName, e.g. 22")] = None,
    start: Annotated[int | None, typer.Option(help="0-based start")] = None,
    end: Annotated[int | None, typer.Option(help="0-based end (a range query)")] = None,
    ref: Annotated[str | None, typer.Option(help="referenceBases")] = None,
    alt: Annotated[str | None, typer.Option(help="alternateBases")] = None,
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="A filter: HP:0001250, age>=P60Y, ...")
    ] = None,
    granularity: Annotated[str, typer.Option(help="boolean, count or record")] = "count",
    deadline: Deadline = None,
) -> None:
    """Ask every node of the hub a Beacon question; print each node's answer and the total.

    Example: genofed query beacon --chrom 22 --start 16050074 --ref A --alt G
    """
    params: dict[str, Any] = {"requestedGranularity": granularity}
    for key, value in (
        ("referenceName", chrom),
        ("start", start),
        ("end", end),
        ("referenceBases", ref),
        ("alternateBases", alt),
    ):
        if value is not None:
            params[key] = value
    if filters:
        params["filters"] = ",".join(filters)
    try:
        body = call_hub(hub, "GET", f"/beacon/v2/{entry}", token, deadline, params=params)
    except HubRequestError as err:
        raise fail(err) from None
    summary = body.get("responseSummary") or {}
    sets = Table(title=f"{entry}: result sets")
    for column in ("result set", "exists", "count"):
        sets.add_column(column)
    for result_set in (body.get("response") or {}).get("resultSets") or []:
        count = result_set.get("resultsCount")
        precision = result_set.get("countPrecision")
        sets.add_row(
            str(result_set.get("id")),
            str(result_set.get("exists")),
            "" if count is None else f"{count}{' (' + precision + ')' if precision else ''}",
        )
    out.print(sets)
    out.print(_nodes_table((body.get("info") or {}).get("nodes") or []))
    total = summary.get("numTotalResults")
    precision = summary.get("countPrecision")
    out.print(
        f"exists: [bold]{summary.get('exists')}[/]"
        + ("" if total is None else f"; total: [bold]{total}[/]")
        + (f" ({precision})" if precision else "")
    )


@query_app.command("sql")
def query_sql(
    sql: Annotated[str, typer.Argument(help='SQL over <node>.<table>, or "*.<table>" aggregates')],
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    parameters: Annotated[
        list[str] | None, typer.Option("--param", help="A ? parameter (JSON, else a string)")
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Stop after this many rows")] = 1000,
    deadline: Deadline = None,
) -> None:
    """Run Data Connect SQL through the hub and print the rows.

    Example: genofed query sql 'SELECT sex, count(*) AS n FROM "*.individuals" GROUP BY sex'
    """
    values = [_parameter(p) for p in parameters or []]
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    errors: list[dict[str, Any]] = []
    try:
        body = call_hub(
            hub,
            "POST",
            "/data-connect/search",
            token,
            deadline,
            json={"query": sql, "parameters": values},
        )
        while True:
            if body.get("data_model") and not columns:
                columns = list((body["data_model"].get("properties") or {}).keys())
            rows += body.get("data") or []
            errors += body.get("errors") or []
            url = (body.get("pagination") or {}).get("next_page_url")
            if not url or len(rows) >= max_rows:
                break
            if not body.get("data"):
                time.sleep(1)
            body = call_hub(hub, "GET", url, token, deadline)
    except HubRequestError as err:
        raise fail(err) from None
    table = Table(title=f"{len(rows[:max_rows])} row(s)")
    columns = columns or (list(rows[0].keys()) if rows else [])
    for column in columns:
        table.add_column(column)
    for row in rows[:max_rows]:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)
    for error in errors:
        where = f"{error['source']}: " if error.get("source") else ""
        console.print(f"[yellow]{where}{error.get('title')}[/]: {error.get('detail')}")


def _parameter(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _criteria(
    terms: list[str] | None,
    sex: str | None,
    min_age: float | None,
    max_age: float | None,
    datasets: list[str] | None,
) -> dict[str, Any]:
    criteria: dict[str, Any] = {"terms": terms or [], "datasets": datasets or []}
    for key, value in (("sex", sex), ("min_age", min_age), ("max_age", max_age)):
        if value is not None:
            criteria[key] = value
    return criteria


Terms = Annotated[
    list[str] | None, typer.Option("--term", help="Phenotype/disease CURIE (with descendants)")
]
Sex = Annotated[str | None, typer.Option(help="female or male")]
MinAge = Annotated[float | None, typer.Option(help="Minimum age in years")]
MaxAge = Annotated[float | None, typer.Option(help="Maximum age in years")]
Datasets = Annotated[
    list[str] | None, typer.Option("--dataset", help="Only this dataset, as <node>:<dataset>")
]


def _print_counts(counts: dict[str, Any]) -> None:
    table = Table(title="Cohort counts")
    for column in ("node", "status", "count"):
        table.add_column(column)
    for node in counts["nodes"]:
        count = node.get("count")
        precision = node.get("countPrecision")
        shown = (
            ""
            if count is None
            else f"{count}" + (f" ({precision})" if precision and precision != "exact" else "")
        )
        if not shown and node.get("withheld"):
            shown = f"{'some' if node.get('exists') else 'none'} ({node['withheld']})"
        table.add_row(node["node"], node["status"], shown)
    out.print(table)
    out.print(f"total: [bold]{_total_text(counts)}[/]")
    if counts.get("partial"):
        out.print("partial: some nodes gave no count")
    for warning in counts.get("warnings") or []:
        console.print(f"[yellow]{warning}[/]")


@cohort_app.command("count")
def cohort_count(
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    terms: Terms = None,
    sex: Sex = None,
    min_age: MinAge = None,
    max_age: MaxAge = None,
    datasets: Datasets = None,
) -> None:
    """Count who matches at every node, without saving.

    Example: genofed cohort count --term ICD10:G40 --sex female --min-age 50
    """
    criteria = _criteria(terms, sex, min_age, max_age, datasets)
    try:
        counts = call_hub(hub, "POST", "/hub/cohorts/count", token, json=criteria)
    except HubRequestError as err:
        raise fail(err) from None
    _print_counts(counts)


@cohort_app.command("create")
def cohort_create(
    name: Annotated[str, typer.Option(help="A name for the cohort")],
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
    terms: Terms = None,
    sex: Sex = None,
    min_age: MinAge = None,
    max_age: MaxAge = None,
    datasets: Datasets = None,
) -> None:
    """Save a cohort definition at the hub (and count it); prints its id."""
    criteria = _criteria(terms, sex, min_age, max_age, datasets)
    try:
        body = {"name": name, "criteria": criteria}
        saved = call_hub(hub, "POST", "/hub/cohorts", token, json=body)
    except HubRequestError as err:
        raise fail(err) from None
    _print_counts(saved["counts"])
    out.print(f"saved as [bold]{saved['id']}[/]")


@cohort_app.command("list")
def cohort_list(hub: Hub = "http://127.0.0.1:8700") -> None:
    """The cohorts saved at the hub: full id, name, when saved, the total then, criteria.

    Example: genofed cohort list
    """
    try:
        cohorts = call_hub(hub, "GET", "/hub/cohorts", None)["cohorts"]
    except HubRequestError as err:
        raise fail(err) from None
    table = Table(title=f"Saved cohorts ({len(cohorts)})")
    table.add_column("id", no_wrap=True)  # full ids: they are what show and delete take
    table.add_column("name")
    table.add_column("saved (UTC)")
    table.add_column("count then", justify="right", no_wrap=True)
    table.add_column("who")
    for cohort in cohorts:
        table.add_row(
            cohort["id"],
            cohort["name"],
            cohort["created"].replace("T", " ").removesuffix("Z"),
            _total_text(cohort.get("countAtSave")),
            cohort["summary"],
        )
    out.print(table)


@cohort_app.command("show")
def cohort_show(
    cohort_id: Annotated[str, typer.Argument(help="The cohort's full id (genofed cohort list)")],
    hub: Hub = "http://127.0.0.1:8700",
    token: Token = None,
) -> None:
    """A saved cohort: its criteria, its total when saved, and each node's count now.

    Example: genofed cohort show cohort-1a2b3c4d5e6f
    """
    try:
        cohort = call_hub(hub, "GET", f"/hub/cohorts/{cohort_id}", token)
    except HubRequestError as err:
        raise fail(err) from None
    out.print(f"[bold]{cohort['name']}[/] ({cohort['id']})")
    if cohort.get("description"):
        out.print(cohort["description"])
    out.print(f"who: {cohort['summary']}")
    saved = cohort["created"].replace("T", " ").removesuffix("Z")
    out.print(f"saved {saved} UTC, count then: {_total_text(cohort.get('countAtSave'))}")
    _print_counts(cohort["counts"])


@cohort_app.command("delete")
def cohort_delete(
    cohort_id: Annotated[str, typer.Argument(help="The cohort's full id (genofed cohort list)")],
    hub: Hub = "http://127.0.0.1:8700",
) -> None:
    """Delete a saved cohort (its definition; no data is touched anywhere).

    Example: genofed cohort delete cohort-1a2b3c4d5e6f
    """
    try:
        call_hub(hub, "DELETE", f"/hub/cohorts/{cohort_id}", None)
    except HubRequestError as err:
        raise fail(err) from None
    console.print(f"deleted {cohort_id}")


def _total_text(counts: dict[str, Any] | None) -> str:
    """A merged total as people read it: ``35``, ``35 (rounded)``, ``some match``."""
    if not counts:
        return "–"
    total = counts.get("total")
    if total is None:  # no node gave a count: only whether anyone matches
        return "some match" if counts.get("exists") else "none match"
    notes = (
        [counts["countPrecision"]] if counts.get("countPrecision") not in (None, "exact") else []
    )
    if counts.get("partial"):
        notes.append("partial")
    return f"{total}" + (f" ({'; '.join(notes)})" if notes else "")
