"""Workflows for the WES tests: a real one (an allele-count table of a dataset), one per
engine, and canaries that try to get out of their sandbox. Each is a CWL tool running a
short Python script (the sandbox's Python has DuckDB), so what it tries is plain to read."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

BWRAP = shutil.which("bwrap")


def need_bwrap() -> None:
    """Skip (saying why) where the sandbox's bubblewrap is not installed."""
    if BWRAP is None:
        pytest.skip("workflow runs need Debian's bubblewrap (apt-get install bubblewrap)")


def cwl_script(script: str, output: str = "result.txt") -> str:
    """A CWL CommandLineTool that runs ``script`` with python3, its stdout the output."""
    body = textwrap.indent(textwrap.dedent(script).strip(), "    ")
    return (
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [python3, -c]\n"
        f"arguments:\n  - |\n{body}\ninputs: []\n"
        f"outputs:\n  result: {{type: stdout}}\nstdout: {output}\n"
    )


ALLELE_COUNTS = cwl_script(
    """
    import duckdb
    con = duckdb.connect("/data/ctrl/dataset.duckdb", read_only=True)
    rows = con.execute("SELECT chrom, pos, ref, alt, ac, an FROM variants ORDER BY chrom, pos")
    print("chrom\\tpos\\tref\\talt\\tac\\tan")
    for row in rows.fetchall():
        print("\\t".join(map(str, row)))
    """,
    "allele-counts.tsv",
)


def network_canary(port: int) -> str:
    return cwl_script(
        f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"escaped")
        print("connected")
        """
    )


def write_canary(targets: list[str]) -> str:
    """Tries to write each target; prints what happened to each (and fails if any worked)."""
    return cwl_script(
        f"""
        import json, sys
        outcome = {{}}
        for target in {json.dumps(targets)}:
            try:
                with open(target, "a") as handle:
                    handle.write("escaped")
                outcome[target] = "written"
            except OSError as err:
                outcome[target] = type(err).__name__
        print(json.dumps(outcome))
        sys.exit(1 if "written" in outcome.values() else 0)
        """
    )


def read_canary(targets: list[str]) -> str:
    """Tries to read each target; prints what happened (and fails if any was read)."""
    return cwl_script(
        f"""
        import json, sys
        outcome = {{}}
        for target in {json.dumps(targets)}:
            try:
                with open(target, "rb") as handle:
                    handle.read(16)
                outcome[target] = "read"
            except OSError as err:
                outcome[target] = type(err).__name__
        print(json.dumps(outcome))
        sys.exit(1 if "read" in [v for k, v in outcome.items() if "/data/ctrl/" not in k] else 0)
        """
    )


SMALL_CELL = cwl_script(
    """
    print("group\\tn")
    print("A\\t25")
    print("B\\t2")
    """,
    "groups.tsv",
)


def link_canary(node_root: str) -> str:
    """Leaves links for the supervisor to follow: where it writes the engine's outputs
    object, and in out/ to the node's files, and a loop whose name is data."""
    return cwl_script(
        f"""
        import os
        os.makedirs("/workflow/out", exist_ok=True)
        os.symlink("../../../../../node.yaml", "/tmp/wes-outputs.json")
        os.symlink("{node_root}/node.yaml", "/workflow/out/config.yaml")
        os.symlink("../../../../../../node.yaml", "/workflow/out/relative.yaml")
        os.symlink("secret-ALICE-BRCA1", "/workflow/out/secret-ALICE-BRCA1")
        print("done")
        """
    )


COUNT_LINES = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [wc, -l]
stdin: $(inputs.table.path)
inputs:
  table: File
outputs:
  lines: {type: stdout}
stdout: lines.txt
"""

MEMORY_CANARY = cwl_script(
    """
    block = bytearray(3 * 1024 * 1024 * 1024)
    print(len(block))
    """
)

SLEEPER = cwl_script(
    """
    import time
    time.sleep(120)
    """
)

WDL_LINES = """version 1.0
task count {
  input { File table }
  command <<< wc -l < ~{table} > lines.txt >>>
  output { File lines = "lines.txt" }
}
workflow lines {
  input { File table }
  call count { input: table = table }
  output { File lines = count.lines }
}
"""

SNAKEFILE = """rule lines:
    input: config["table"]
    output: "out/lines.tsv"
    shell: "printf 'n\\n%s\\n' $(wc -l < {input}) > {output}"
"""
