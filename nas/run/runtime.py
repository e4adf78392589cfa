"""Run-time plumbing shared by every command: device choice, seeding, RNG states, autocast and the
provenance saved next to every result (run directories: `nas.core.rundir`)."""

from __future__ import annotations

import contextlib
import datetime
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from nas.core.errors import UserError


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when present, else the CPU. Asking for CUDA where there is none is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_backends(device: torch.device, deterministic: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (no loss scaling needed for bf16), otherwise a no-op."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_state() -> dict:
    """Every global RNG the run touches: python, numpy, torch CPU and CUDA, as tensors and plain values
    only, so a checkpoint holding it loads with `torch.load(weights_only=True)` (`nas.run.checkpoint`)."""
    version, internal, gauss = random.getstate()  # (3, 625 ints, None)
    np_state = np.random.get_state(legacy=False)  # {"bit_generator", "state": {"key", "pos"}, ...}
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),  # uint32 values, exact
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`, or the tuple form that checkpoints written before it hold."""
    py, npy = state["python"], state["numpy"]
    if isinstance(py, dict):
        py = (py["version"], tuple(py["state"].tolist()), py["gauss"])
    random.setstate(py)
    if isinstance(npy, dict):
        key = npy["key"].numpy().astype(np.uint32)
        npy = {"bit_generator": npy["bit_generator"], "state": {"key": key, "pos": npy["pos"]},
               "has_gauss": npy["has_gauss"], "gauss": npy["gauss"]}  # fmt: skip
    np.random.set_state(npy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_record() -> dict:
    """The CPU a result came from: its model, the vector instructions torch's kernels use, the threads. The same
    seed gives the same result on the same CPU, but another CPU model or thread count sums floats in another order,
    and a search whose alpha stays near uniform can then derive another cell (experiments/search_vs_random)."""
    model = platform.processor() or None
    with contextlib.suppress(OSError):  # Linux names the model; platform.processor() often says only "x86_64"
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "model": model,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def provenance() -> dict:
    """What produced a result: code version, library versions, machine, command line, time."""
    versions = {}
    for pkg in ("nas", "torch", "torchvision", "timm", "omegaconf", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git_commit": git_commit(),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_record(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": " ".join(sys.argv),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
