"""The workflow engines a node offers, behind one interface: what a run's command is.

Each engine is a Python package from PyPI, run by its own console script next to this
interpreter (``python -m cwltool`` drops cwltool's exit status), inside the run's sandbox
(``wes.sandbox``), so it is present exactly when its package is installed. None of them
uses a container engine here: cwltool runs with ``--no-container``, miniwdl with its
``bare`` backend (the miniwdl-backend-bare plugin, which runs each task as a process on
the host, here the sandbox), and Snakemake runs rules as processes by default. An
operator with Docker or Apptainer could give each tool its own image (cwltool's
``DockerRequirement``, miniwdl's docker/singularity backends, Snakemake's
``--software-deployment-method apptainer``); genofed's sandbox is what confines a run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from genofed._exceptions import QueryError

# Where, inside the sandbox, a run's files are (its working directory) and what it writes.
WORKDIR = Path("/workflow")
OUTDIR = WORKDIR / "out"


@dataclass(frozen=True)
class Engine:
    name: str  # the WES ``workflow_engine``
    workflow_type: str  # the WES ``workflow_type``
    type_versions: tuple[str, ...]  # the ``workflow_type_version``s it runs
    distribution: str  # its package on PyPI
    script: str  # its console script, beside this Python
    needs: tuple[str, ...] = ()  # other packages it needs here

    @property
    def version(self) -> str | None:
        """The installed version, or None when the engine is not installed here."""
        return _version(self.distribution, self.needs)

    def command(self, workflow: str, params: str, cores: int) -> list[str]:
        """The engine's command line for a workflow and its parameters (file names in
        ``WORKDIR``); what it makes goes to ``OUTDIR``."""
        python = [str(Path(sys.executable).parent / self.script)]
        if self.name == "cwltool":
            return [*python, "--no-container", "--disable-color", "--outdir", str(OUTDIR),
                    "--tmpdir-prefix", "/tmp/", "--tmp-outdir-prefix", "/tmp/",
                    workflow, params]  # fmt: skip
        if self.name == "miniwdl":
            return [*python, "run", workflow, "--input", params, "--dir",
                    f"{WORKDIR / 'wdl'}/.", "--no-color", "--error-json"]  # fmt: skip
        # Snakemake: a Snakefile writes its results under out/ (there is no outputs object)
        # no profile: a profiles/default/ folder beside the Snakefile would configure it
        return [*python, "--snakefile", workflow, "--configfile", params, "--cores",
                str(cores), "--directory", str(WORKDIR), "--nolock", "--quiet",
                "--workflow-profile", "none"]  # fmt: skip

    @property
    def results(self) -> Path:
        """Where, in the sandbox, the run's outputs are once it completed."""
        return WORKDIR / "wdl" / "out" if self.name == "miniwdl" else OUTDIR

    def environment(self) -> dict[str, str]:
        if self.name == "miniwdl":
            # run tasks as processes (in the sandbox), keep no cache outside the run
            return {"MINIWDL__SCHEDULER__CONTAINER_BACKEND": "bare",
                    "MINIWDL__CALL_CACHE__GET": "false", "MINIWDL__CALL_CACHE__PUT": "false",
                    "MINIWDL__DOWNLOAD_CACHE__GET": "false",
                    "MINIWDL__DOWNLOAD_CACHE__PUT": "false"}  # fmt: skip
        return {}


ENGINES = (
    Engine("cwltool", "CWL", ("v1.0", "v1.1", "v1.2"), "cwltool", "cwltool"),
    Engine("miniwdl", "WDL", ("1.0", "1.1"), "miniwdl", "miniwdl", ("miniwdl-backend-bare",)),
    Engine("snakemake", "SMK", ("9",), "snakemake", "snakemake"),
)


@cache
def _version(distribution: str, needs: tuple[str, ...]) -> str | None:
    try:
        for other in needs:
            metadata.version(other)
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def present() -> list[Engine]:
    """The engines installed here: exactly those service-info lists."""
    return [e for e in ENGINES if e.version is not None]


def engine_for(
    workflow_type: str,
    type_version: str,
    engine: str | None = None,
    engine_version: str | None = None,
) -> Engine:
    """The engine that runs a request, or a 400 saying what this node offers."""
    offered = present()
    matching = [e for e in offered if e.workflow_type == workflow_type.upper()]
    if engine is not None:
        matching = [e for e in matching if e.name == engine]
    listed = ", ".join(f"{e.workflow_type} {'/'.join(e.type_versions)} ({e.name} {e.version})"
                       for e in offered)  # fmt: skip
    if not matching:
        raise QueryError(
            f"this node runs no {workflow_type} workflows"
            + (f" with {engine}" if engine else "")
            + f"; it offers {listed or 'none'}"
        )
    chosen = matching[0]
    if type_version not in chosen.type_versions:
        raise QueryError(
            f"{chosen.name} here runs {workflow_type} {', '.join(chosen.type_versions)}, "
            f"not {type_version!r}"
        )
    if engine_version is not None and engine_version != chosen.version:
        raise QueryError(f"{chosen.name} here is version {chosen.version}, not {engine_version}")
    return chosen
