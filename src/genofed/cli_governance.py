"""``genofed passport …``, ``genofed audit …`` and ``genofed node trust``: identity and audit
from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from genofed._exceptions import ConfigError, GenofedError
from genofed.cli_output import console, fail
from genofed.config import TrustedIssuer, load_config, save_config
from genofed.store.node_dir import NodeDir

passport_app = typer.Typer(
    help="A development Passport broker and visa issuer (for demos and tests; a node "
    "trusts it only when told to with `genofed node trust`).",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="Read and verify a node's tamper-evident audit log.", no_args_is_help=True
)

KeyPath = Annotated[Path, typer.Argument(help="Key file (JSON: issuer + private JWK)")]


@passport_app.command("keygen")
def keygen(
    key_file: KeyPath,
    issuer: Annotated[str, typer.Option(help="The `iss` of everything this key signs")],
) -> None:
    """Create an ES256 signing key (the file is readable by you only)."""
    from genofed.governance.keys import create_key

    try:
        key = create_key(key_file, issuer)
    except FileExistsError:
        raise fail(GenofedError(f"{key_file} exists; not overwriting a key")) from None
    console.print(f"Created key {key.kid} for {issuer} in {key_file}")


@passport_app.command("jwks")
def jwks(key_file: KeyPath) -> None:
    """Print the public JWK Set that nodes should pin to trust this key."""
    from genofed.governance.keys import load_key

    typer.echo(json.dumps(load_key(key_file).jwks(), indent=2))


@passport_app.command("issue")
def issue(
    key_file: KeyPath,
    sub: Annotated[str, typer.Option(help="The researcher's subject identifier")],
    bona_fide: Annotated[
        bool,
        typer.Option(
            "--bona-fide",
            help="Add ResearcherStatus + AcceptedTermsAndPolicies visas (registered access)",
        ),
    ] = False,
    grant: Annotated[
        list[str] | None,
        typer.Option(help="Add a ControlledAccessGrants visa (by dac) with this value"),
    ] = None,
    affiliation: Annotated[
        str | None, typer.Option(help="Add an AffiliationAndRole visa, e.g. faculty@uni.example")
    ] = None,
    visa: Annotated[
        list[str] | None,
        typer.Option(
            help="Carry this visa (a JWT issued elsewhere, e.g. by a node's DAC: "
            "GET /dac/applications/{id}/visa); repeatable"
        ),
    ] = None,
    hours: Annotated[float, typer.Option(help="Lifetime of the Passport and its visas")] = 1.0,
    audience: Annotated[str | None, typer.Option(help="Set `aud` (a node's public URL)")] = None,
    access_token: Annotated[
        bool,
        typer.Option(
            "--access-token",
            help="Print an access token to exchange at `genofed passport serve` instead",
        ),
    ] = False,
) -> None:
    """Print a signed Passport (or access token) carrying the requested visas."""
    from genofed import devbroker as broker
    from genofed.governance import keys

    key = keys.load_key(key_file)
    visas = broker.bona_fide_visas(key, sub, hours) if bona_fide else []
    for value in grant or []:
        visas.append(
            keys.sign_visa(key, sub, "ControlledAccessGrants", value, by="dac", hours=hours)
        )
    if affiliation:
        visas.append(keys.sign_visa(key, sub, "AffiliationAndRole", affiliation, by="system"))
    for token in visa or []:
        if token.count(".") != 2:
            raise fail(
                GenofedError(
                    "--visa takes the visa's JWT itself (header.payload.signature), e.g. "
                    'the "visa" member of GET /dac/applications/{id}/visa'
                )
            )
        visas.append(token.strip())
    if access_token:
        typer.echo(broker.access_token(key, sub, visas, hours=hours))
    else:
        typer.echo(broker.passport(key, sub, visas, hours=hours, audience=audience))


@passport_app.command("serve")
def serve_broker(
    key_file: KeyPath,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8780,
) -> None:
    """Serve /.well-known/jwks.json and an RFC 8693 /token exchange endpoint."""
    import uvicorn

    from genofed.devbroker import broker_app
    from genofed.governance.keys import load_key

    console.print(f"Development broker at http://{host}:{port} (Ctrl-C to stop)")
    uvicorn.run(broker_app(load_key(key_file)), host=host, port=port, log_level="warning")


def _read_jwks(path: Path) -> dict:
    """A JWK Set file's keys, or a ConfigError saying what is wrong with the file."""
    text = path.read_text()
    try:
        jwks = json.loads(text) if text.strip() else None
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON ({exc}); give the issuer's JWK Set") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ConfigError(
            f'{path} holds no keys: a JWK Set is {{"keys": [...]}} with at least one key '
            "(`genofed passport jwks KEYFILE` prints one)"
        )
    return jwks


def node_trust(
    directory: Annotated[Path, typer.Argument(help="The node directory")],
    issuer: Annotated[str, typer.Option(help="The exact `iss` of the tokens to trust")],
    jwks_file: Annotated[
        Path | None, typer.Option(help="Pin the keys in this JWK Set file (copied into node.yaml)")
    ] = None,
    jwks_url: Annotated[str | None, typer.Option(help="Fetch the keys from this URL")] = None,
    broker: Annotated[
        bool, typer.Option("--broker/--no-broker", help="Trust it to sign Passports")
    ] = True,
    visas: Annotated[
        bool, typer.Option("--visas/--no-visas", help="Trust it to sign visas")
    ] = True,
    token_exchange_url: Annotated[
        str | None, typer.Option(help="Its RFC 8693 endpoint, to resolve access tokens")
    ] = None,
    userinfo_url: Annotated[
        str | None, typer.Option(help="Its OIDC userinfo endpoint (used without token exchange)")
    ] = None,
) -> None:
    """Trust an issuer of Passports and/or visas (adds it to node.yaml)."""
    path = NodeDir(directory).config_path
    try:
        config = load_config(path)
        if (jwks_file is None) == (jwks_url is None):
            raise ConfigError("give exactly one of --jwks-file and --jwks-url")
        pinned = _read_jwks(jwks_file) if jwks_file else None
        entry = TrustedIssuer(
            issuer=issuer,
            jwks=pinned,
            jwks_url=jwks_url,
            token_exchange_url=token_exchange_url,
            userinfo_url=userinfo_url,
        )
    except (GenofedError, OSError, ValueError) as err:
        raise fail(err) from None
    if broker:
        config.trust.brokers = [b for b in config.trust.brokers if b.issuer != issuer] + [entry]
    if visas:
        config.trust.visa_issuers = [v for v in config.trust.visa_issuers if v.issuer != issuer] + [
            entry.model_copy(update={"token_exchange_url": None, "userinfo_url": None})
        ]
    save_config(config, path)
    roles = " and ".join(r for r, on in (("Passports", broker), ("visas", visas)) if on)
    console.print(f"Node now trusts {issuer} for {roles or 'nothing'}")


@audit_app.command("verify")
def audit_verify(
    directory: Annotated[Path, typer.Argument(help="The node directory")],
    expect_head: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH recorded earlier with `genofed audit head` (detects truncation)"
        ),
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option(
            help="A file of signed heads the hub kept for this node (GET "
            "/hub/audit-anchors/NODE): detects a log rewritten with every hash recomputed",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Check the whole hash chain; name every modified, deleted, inserted or reordered entry.

    The chain alone cannot show a log rewritten from some entry on with every later hash
    recomputed; heads recorded elsewhere can. Give them with --expect-head or --anchors:

        curl -s http://hub:8000/hub/audit-anchors/alpha > alpha-anchors.jsonl
        genofed audit verify nodes/alpha --anchors alpha-anchors.jsonl
    """
    from genofed.governance.audit import verify
    from genofed.governance.audit_anchors import read_anchors
    from genofed.governance.keys import load_key

    node = NodeDir(directory)
    try:
        node.check()  # a path that is not a node has no log to call intact
    except GenofedError as err:
        raise fail(err) from None
    heads: list[tuple[int, str]] = []
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise fail(GenofedError("--expect-head must be SEQ:HASH as printed by `audit head`"))
        heads.append((int(seq), digest))
    bad_anchors: list[str] = []
    if anchors is not None:
        try:
            key = load_key(node.signing_key_path).key
        except FileNotFoundError:
            raise fail(
                GenofedError(f"{node.signing_key_path} is missing: anchors cannot be checked")
            ) from None
        found, bad_anchors = read_anchors(anchors, key)
        heads.extend((a.seq, a.hash) for a in found)
        console.print(f"Checking {len(found):,} anchors from {anchors}")
    result = verify(node.audit_path, heads)
    for problem in bad_anchors:
        console.print(
            f"[bold red]anchor not this node's:[/] {problem} (the node's key was replaced, "
            "or the file is another node's)"
        )
    for problem in result.problems:
        console.print(f"[bold red]tampered:[/] {problem}")
    if result.torn_tail:
        console.print(
            "[yellow]torn tail:[/] the last line was never finished (a crash or a full disk); "
            "the node sets it aside on its next request"
        )
    for torn in result.torn:
        console.print(
            f"[yellow]torn tail set aside:[/] {torn.name} ({torn.stat().st_size:,} bytes, "
            "a line never finished; not part of the chain)"
        )
    if not result.ok or bad_anchors:
        raise typer.Exit(code=1)
    console.print(
        f"Audit log intact: {result.entries:,} entries, head {result.head[0]}:{result.head[1]}"
    )


@audit_app.command("head")
def audit_head(directory: Annotated[Path, typer.Argument(help="The node directory")]) -> None:
    """Print SEQ:HASH of the latest entry, to record somewhere the node cannot rewrite."""
    from genofed.governance.audit import AuditLog

    node = NodeDir(directory)
    try:
        node.check()
    except GenofedError as err:
        raise fail(err) from None
    seq, digest = AuditLog(node.audit_path).head()
    typer.echo(f"{seq}:{digest}")


dac_app = typer.Typer(
    help="The node's Data Access Committee: consent codes, applications, decisions.",
    no_args_is_help=True,
)
NodeDirArg = Annotated[Path, typer.Argument(help="The node directory")]


def _dac(directory: Path):
    from genofed.node.runtime import NodeRuntime

    return NodeRuntime(directory).gate.dac


@dac_app.command("consent")
def dac_consent(
    directory: NodeDirArg,
    dataset: Annotated[str, typer.Argument(help="Dataset id")],
    duo: Annotated[list[str], typer.Option(help="DUO code, e.g. DUO:0000007 (repeatable)")],
    disease: Annotated[
        list[str] | None, typer.Option(help="Disease term of a DS code (repeatable)")
    ] = None,
) -> None:
    """Record a dataset's DUO consent codes (in node.yaml), used to match applications.

    Example: genofed dac consent ./node demo-cohort --duo DUO:0000007 --disease ICD10:E11
    """
    from genofed.config import DatasetPolicy
    from genofed.governance.duo import DS, NAMES
    from genofed.store.documents import curie_problem

    node = NodeDir(directory)
    path = node.config_path
    try:
        config = load_config(path)
        known = sorted(d.dataset_id for d in node.datasets())
        if dataset not in known:
            raise GenofedError(
                f"node {directory} has no dataset {dataset!r}; its datasets: "
                f"{', '.join(known) or 'none yet (run genofed node ingest)'}"
            )
        unknown = [code for code in duo if code not in NAMES]
        if unknown:
            raise GenofedError(
                f"{', '.join(unknown)}: not a DUO code this node knows; use one of "
                f"{', '.join(sorted(NAMES))} (see https://github.com/EBISPOT/DUO)"
            )
        for term in disease or []:
            if (problem := curie_problem(term)) is not None:
                raise GenofedError(f"--disease {term!r} {problem}")
        if DS in duo and not disease:
            raise GenofedError(
                f"{DS} (disease specific research) needs the diseases: add --disease TERM"
            )
    except GenofedError as err:
        raise fail(err) from None
    policy = config.datasets.get(dataset) or DatasetPolicy()
    config.datasets[dataset] = policy.model_copy(
        update={"duo": list(duo), "duo_diseases": list(disease or [])}
    )
    save_config(config, path)
    console.print(f"Dataset {dataset}: consent {', '.join(duo)}")


@dac_app.command("list")
def dac_list(directory: NodeDirArg) -> None:
    """Every application with its status."""
    from rich.table import Table

    table = Table("id", "dataset", "applicant", "status", "title")
    for app in _dac(directory).list():
        table.add_row(
            app["id"], app["dataset_id"], app["applicant_sub"], app["status"], app["title"]
        )
    Console().print(table)


@dac_app.command("show")
def dac_show(
    directory: NodeDirArg, application: Annotated[str, typer.Argument(help="Application id")]
) -> None:
    """One application: purpose, DUO match explanation and history, as JSON."""
    dac = _dac(directory)
    try:
        app = dac.get(application)
    except GenofedError as err:
        raise fail(err) from None
    typer.echo(json.dumps({**app, "events": dac.events(application)}, indent=2, default=str))


@dac_app.command("decide")
def dac_decide(
    directory: NodeDirArg,
    application: Annotated[str, typer.Argument(help="Application id")],
    decision: Annotated[str, typer.Option(help="approve, reject or return (for changes)")],
    reviewer: Annotated[str, typer.Option(help="Your name, recorded with the decision")],
    note: Annotated[str | None, typer.Option(help="Why; shown to the applicant")] = None,
) -> None:
    """Decide an application that the DUO matcher left to humans."""
    try:
        app = _dac(directory).decide(application, reviewer, decision, note)
    except GenofedError as err:
        raise fail(err) from None
    console.print(f"Application {application}: {app['status']}")


@dac_app.command("revoke")
def dac_revoke(
    directory: NodeDirArg,
    application: Annotated[str, typer.Argument(help="Application id")],
    reviewer: Annotated[str, typer.Option(help="Your name, recorded with the revocation")],
    note: Annotated[str | None, typer.Option(help="Why")] = None,
) -> None:
    """Withdraw an approval; its visa stops working at this node at once."""
    try:
        app = _dac(directory).revoke(application, reviewer, note)
    except GenofedError as err:
        raise fail(err) from None
    console.print(f"Application {application}: {app['status']}")


guard_app = typer.Typer(
    help="The state the node's disclosure guards keep: see it, and reset it.",
    no_args_is_help=True,
)
GuardKind = Annotated[
    str,
    typer.Option(
        "--what",
        help="alleles (the public allele guard), differencing, budget, or all",
    ),
]


def _release(directory: Path):
    from genofed.governance.release import ReleasePolicy

    node = NodeDir(directory)
    try:
        node.check()
        config = load_config(node.config_path)
    except GenofedError as err:
        raise fail(err) from None
    return config, ReleasePolicy(config.disclosure, node.state_dir)


@guard_app.command("status")
def guard_status(directory: NodeDirArg) -> None:
    """What each guard remembers now: the people left out of each dataset's anonymous
    allele answers (and whose questions left them out), the count answers the
    differencing guard remembers per caller, and today's queries per caller."""
    from rich.table import Table

    config, release = _release(directory)
    rules = config.disclosure
    assert release.alleles and release.differencing and release.budget
    alleles = Table(
        "dataset",
        "people left out",
        "asked by",
        title=f"Public allele guard (at most {rules.public_guard_max_excluded} per dataset, "
        f"for {rules.public_guard_window_days} day(s))",
    )
    for dataset, n, full, callers in release.alleles.status():
        note = " (full: the public floor is raised)" if full else ""
        alleles.add_row(dataset, f"{n}{note}", ", ".join(callers))
    differencing = Table(
        "caller",
        "subject",
        "answers remembered",
        title=f"Differencing guard (k = {rules.differencing_k})",
    )
    for caller, subject, n in release.differencing.status():
        differencing.add_row(caller, subject, str(n))
    budget = Table(
        "caller",
        "queries today",
        title=f"Query budget ({rules.query_budget or 'no limit'} per caller and day)",
    )
    for caller, used in release.budget.status():
        budget.add_row(caller, str(used))
    out = Console()
    for table in (alleles, differencing, budget):
        out.print(table)


@guard_app.command("reset")
def guard_reset(
    directory: NodeDirArg,
    what: GuardKind = "alleles",
    dataset: Annotated[
        str | None, typer.Option(help="The public allele guard: only this dataset")
    ] = None,
    caller: Annotated[
        str | None,
        typer.Option(help="Differencing and budget: only this caller (as `status` names them)"),
    ] = None,
) -> None:
    """Forget what a guard remembers: the people left out of anonymous allele answers
    (whose floor is then the configured one again), a caller's differencing history, or
    today's budgets."""
    _, release = _release(directory)
    assert release.alleles and release.differencing and release.budget
    guards = {
        "alleles": lambda: release.alleles.reset(dataset),  # type: ignore[union-attr]
        "differencing": lambda: release.differencing.reset(caller),  # type: ignore[union-attr]
        "budget": lambda: release.budget.reset(caller),  # type: ignore[union-attr]
    }
    chosen = list(guards) if what == "all" else [what]
    if any(name not in guards for name in chosen):
        raise fail(GenofedError(f"--what must be alleles, differencing, budget or all; not {what}"))
    for name in chosen:
        console.print(f"{name}: forgot {guards[name]()} record(s)")
