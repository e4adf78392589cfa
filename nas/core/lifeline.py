"""A stage process that dies with the process that started it.

`nas ablate` runs each stage of a grid point (`nas search`, `nas rank`, `nas train`) as a `python -m nas`
subprocess. If the driver is killed (SIGTERM from a scheduler, SIGKILL, a lost Ray worker), an orphaned stage
would keep the CPU and its run directory's lock, and the rerun that should resume it would be refused. The
driver puts its pid in the stage's environment under `PARENT_ENV`; the stage, first thing, asks Linux for
SIGKILL when that parent goes (prctl PR_SET_PDEATHSIG). It loses at most the work since its last checkpoint,
which the rerun resumes. The variable is removed from the stage's environment, so processes the stage starts
itself (torchrun's workers) do not inherit a parent they do not have. Elsewhere than Linux nothing happens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "NAS_DIE_WITH_PARENT"
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when the thread that started it ends


def lifeline_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) plus this process's pid, for a child that must die with it."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def follow_parent() -> None:
    """If started with `lifeline_env`, die (SIGKILL) when the parent does; exit at once if it already has."""
    value = os.environ.pop(PARENT_ENV, None)
    if value is None or not sys.platform.startswith("linux"):
        return
    try:
        parent = int(value)
    except ValueError:
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the prctl: nobody would stop this process
        os._exit(1)
