"""The safe setting of a workflow run: bubblewrap (Debian's ``bwrap``) around its engine.

A run sees a read-only root holding only the operating system's programs (``/usr``) and
this Python, its own working directory (``/workflow``, read-write), its own ``/tmp`` (in
its run directory, so on disk), and each dataset it was granted read-only at
``/data/<dataset>``: nothing else of the node (its configuration, keys, audit log, other
datasets, other runs). It has no network: a new network namespace holds only a loopback
of its own, so neither the internet nor a service on the node's 127.0.0.1 is reachable.
It runs as ``nobody`` with no capabilities, in its own PID, IPC and UTS namespaces, and
dies with the process that started it. Resource limits are the kernel's: address space
(memory), CPU seconds, largest file written, and which cores it may use; the wall time is
the supervisor's (``wes.supervise``).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genofed._exceptions import ConfigError
from genofed.wes.engines import WORKDIR

BWRAP = "bwrap"


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpu_s: int
    wall_s: int
    cores: int
    file_mb: int
    processes: int = 512


@dataclass(frozen=True)
class Sandbox:
    workdir: Path  # the run's working directory on the host
    tmpdir: Path  # its /tmp, on the host
    datasets: dict[str, Path] = field(default_factory=dict)  # id -> the version's folder

    def command(self, argv: list[str], environment: dict[str, str]) -> list[str]:
        """``argv`` (paths as the sandbox sees them) wrapped in bubblewrap."""
        bwrap = shutil.which(BWRAP)
        if bwrap is None:
            raise ConfigError(
                "workflows need bubblewrap for their sandbox: apt-get install bubblewrap"
            )
        wrapped = [bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
                   "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                   "--tmpfs", "/", "--bind", str(self.tmpdir), "/tmp",
                   "--ro-bind", "/usr", "/usr"]  # fmt: skip
        for name in ("bin", "lib", "lib64", "sbin"):
            target = Path("/") / name
            if target.is_symlink():  # Debian's merged /usr
                wrapped += ["--symlink", os.readlink(target), str(target)]
            elif target.is_dir():
                wrapped += ["--ro-bind", str(target), str(target)]
        for prefix in sorted({sys.prefix, sys.base_prefix}):  # this Python and its packages
            if not prefix.startswith("/usr"):
                wrapped += ["--ro-bind", prefix, prefix]
        for name in ("alternatives", "ld.so.cache"):  # what programs need of /etc, no more
            if (Path("/etc") / name).exists():
                wrapped += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        # who the run is (some programs look themselves up): nobody, at home in /workflow
        accounts = self.tmpdir.parent / "accounts"
        accounts.mkdir(exist_ok=True)
        (accounts / "passwd").write_text("nobody:x:65534:65534:nobody:/tmp:/bin/sh\n")
        (accounts / "group").write_text("nogroup:x:65534:\n")
        wrapped += ["--ro-bind", str(accounts / "passwd"), "/etc/passwd",
                    "--ro-bind", str(accounts / "group"), "/etc/group"]  # fmt: skip
        wrapped += ["--proc", "/proc", "--dev", "/dev",
                    "--bind", str(self.workdir), str(WORKDIR)]  # fmt: skip
        for dataset, folder in sorted(self.datasets.items()):
            wrapped += ["--ro-bind", str(folder), f"/data/{dataset}"]
        wrapped += ["--chdir", str(WORKDIR), "--remount-ro", "/", "--clearenv"]
        path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
        # HOME is the run's own empty /tmp: no attachment can be an engine's configuration
        for name, value in {"PATH": path, "HOME": "/tmp", "TMPDIR": "/tmp",
                            "LANG": "C.UTF-8", "NO_COLOR": "1", **environment}.items():  # fmt: skip
            wrapped += ["--setenv", name, value]
        return [*wrapped, "--", *argv]


def limiter(limits: Limits, slot: int = 0) -> Callable[[], None]:
    """What the child runs before it becomes the sandbox: the kernel's limits, inherited
    by everything the run starts. Runs in different slots get different cores."""

    def apply() -> None:
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # counted per user: binding when the node runs as its own user (as it should); the
        # kernel does not apply it to root
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        available = sorted(os.sched_getaffinity(0))
        count = min(max(1, limits.cores), len(available))
        first = slot * count
        os.sched_setaffinity(0, {available[(first + i) % len(available)] for i in range(count)})

    return apply
