"""Run directories: one run per directory, claimed for the run's whole life, and no dead ends.

Claiming (`claim`): the process that runs (rank 0 under torchrun) creates `out_dir/.nas.lock` exclusively
(a hard link of a fully written temp file, so the lock never exists half-written) and holds an `flock`
on it until it exits. A second command on the same directory finds the lock and stops with one line
naming the holder. A lock left by a process that died (SIGKILL, power loss) is stale: its flock is free
and, on this host, its PID is gone; it is removed and the claim proceeds. A lock from another host is
never broken (its PID cannot be checked from here), except by a restart of the same torchrun job. A
command that rewrites a finished run's files (`nas derive`) takes the same lock (`holding`).

What a claimed directory may hold (`decide`):
- nothing: a new run;
- a checkpoint: resumable (`--resume`); a new run there is refused;
- the command's final result but no checkpoint: finished; a new run is refused;
- only what a run of the same command writes, without a checkpoint (it died in its first epoch): a dead
  run, cleared and started again, by a new run or by `--resume` (there is nothing to resume from);
- anything else (a user's files, another command's run): refused.
Temp files of atomic writes cut short by a kill are removed once the directory is claimed.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nas.core.errors import UserError

# The file names of a run directory, in one place (search, retrain and ablation runs)
LOCK = ".nas.lock"
CHECKPOINT = "checkpoints/last.pt"
CONFIG_FILE = "config.yaml"  # the resolved config with its provenance block
METRICS_LOG = "metrics.jsonl"  # one JSON object per epoch
RESULT_FILE = "metrics.json"  # a retrain's final numbers
GENOTYPE_FILE = "genotype.json"  # a search's derived architecture
ALPHAS_FILE = "alphas.json"  # a search's final alpha: logits, not probabilities (those: genotype.json)
COST_TABLE_FILE = "cost_table.json"  # the cost table a resource-aware search used
# what a run writes into out_dir; a directory holding only these and no checkpoint is a dead run
RUN_OUTPUTS = (
    CONFIG_FILE,
    METRICS_LOG,
    RESULT_FILE,
    GENOTYPE_FILE,
    ALPHAS_FILE,
    "tb",
    "checkpoints",
    "genotype.png",
)


def kept_checkpoint(epoch: int) -> str:
    """Where `keep_checkpoints` keeps the checkpoint written at the end of `epoch - 1` (resumes at `epoch`)."""
    return f"checkpoints/epoch-{epoch}.pt"


try:
    import fcntl
except ImportError:  # not POSIX: PID checks only
    fcntl = None


def _is_temp(path: Path) -> bool:
    """A temp file of `nas.core.atomic.atomic_write` (or of a lock being created)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


# --- the lock ------------------------------------------------------------------------------------------


@dataclass
class Lock:
    path: Path
    fd: int


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "torchrun_job": os.environ.get("TORCHELASTIC_RUN_ID"),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }


def _flock(fd: int) -> bool | None:
    """Try to take the exclusive flock of `fd`: True if taken, False if another process holds it, None if
    the file system does not support flock."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF):
            return None
        raise


def _pid_alive(pid: Any) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stale(owner: dict[str, Any] | None, flock_free: bool | None) -> bool:
    """Whether the lock's owner is gone. `flock_free` is the result of `_flock` on the lock file."""
    if flock_free is False:
        return False  # a live process holds it
    if owner is None:
        return flock_free is True  # unreadable content, nobody holds it
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if (
        restart
        and owner.get("torchrun_job")
        and owner.get("torchrun_job") == os.environ.get("TORCHELASTIC_RUN_ID")
    ):
        return True  # an earlier attempt of this very torchrun job: torchrun stopped it before restarting us
    if owner.get("host") != socket.gethostname():
        return False  # its PID means nothing here
    return flock_free is True or not _pid_alive(owner.get("pid"))


def _read_owner(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "another process"
    return (
        f"pid {owner.get('pid')} on {owner.get('host')} (since {owner.get('since')}: {owner.get('command')})"
    )


def _break_if_stale(lock: Path) -> dict[str, Any] | None:
    """Remove `lock` if its owner is gone; return the owner if it is alive. Only a process holding the
    flock of the very inode `lock` names unlinks it, so two processes breaking one stale lock at once
    cannot remove each other's fresh lock."""
    try:
        fd = os.open(lock, os.O_RDWR)  # for writing: flock over NFS is a POSIX lock, which needs it
    except FileNotFoundError:
        return None
    except PermissionError:
        fd = os.open(lock, os.O_RDONLY)
    try:
        owner = _read_owner(fd)
        if not _stale(owner, _flock(fd)):
            return owner or {}
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                os.unlink(lock)
        return None
    finally:
        os.close(fd)


def _publish(tmp: Path, lock: Path, fd: int) -> None:
    """Make the complete temp file `tmp` (open as `fd`) appear as `lock`, exclusively.

    A hard link is atomic and exclusive, and the lock is whole when it appears. Where the file system
    has no hard links, `lock` is created exclusively and filled (a reader may see it empty for an instant:
    an unreadable lock counts as held unless its flock is free)."""
    try:
        os.link(tmp, lock)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
    lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(lock_fd, os.pread(fd, 4096, 0))
    os.dup2(lock_fd, fd)  # hold the flock of the published file through `fd`
    os.close(lock_fd)
    _flock(fd)


def acquire(out: Path, what: str = "out_dir") -> Lock:
    """Claim `out` (an existing directory) for this process; `what` names it in messages.

    Raises:
        UserError: another live process holds it, or the directory is not writable.
    """
    lock = out / LOCK
    tmp = out / f"{LOCK}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write in out_dir {out}: {exc.strerror}") from None
    try:
        os.write(fd, json.dumps(_owner()).encode())
        _flock(fd)  # our own new file: always free
        for _ in range(5):
            try:
                _publish(tmp, lock, fd)
                return Lock(lock, fd)
            except FileExistsError:
                owner = _break_if_stale(lock)
                if owner is not None:
                    raise UserError(
                        f"{what} {out} is in use by {_describe(owner)}; wait for it, or if no such process "
                        f"runs any more, delete {lock}"
                    ) from None
            except OSError as exc:  # the directory vanished under us, or the file system refuses
                raise UserError(f"cannot claim out_dir {out}: {exc.strerror}") from None
        raise UserError(f"out_dir {out} is being claimed by several processes at once; try again")
    except BaseException:
        os.close(fd)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def release(lock: Lock) -> None:
    """Remove the lock (if it is still ours) and drop its flock."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(lock.path).st_ino == os.fstat(lock.fd).st_ino:
            os.unlink(lock.path)
    os.close(lock.fd)


@contextlib.contextmanager
def holding(run_dir: Path) -> Iterator[None]:
    """Hold an existing run directory's lock for the context, as the run that writes it does: a command
    that rewrites a run's files (`nas derive`) never reads a half-written checkpoint or writes under a
    search that is still going.

    Raises:
        UserError: a live process (the run itself) holds it.
    """
    lock = acquire(run_dir, "run")
    try:
        yield
    finally:
        release(lock)


# --- what the directory holds ------------------------------------------------------------------------------


def _contents(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.name != LOCK and not _is_temp(p)}


def clear_outputs(out: Path) -> None:
    """Remove a dead run's outputs and the temp files of its cut-short writes."""
    for path in [*(out / name for name in RUN_OUTPUTS), *out.glob(".*.tmp")]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists() and not path.name.startswith(LOCK):  # another claimant's lock in the making
            path.unlink()


def remove_torn_temps(out: Path) -> None:
    """Temp files of atomic writes killed half-way (we hold the lock: no live writer owns them)."""
    for folder in (out, out / "checkpoints"):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                if path.is_file() and not path.name.startswith(LOCK):
                    path.unlink(missing_ok=True)


def _same_command(out: Path, schema: type) -> bool:
    """Whether the config.yaml in `out` is one this command writes: every section of it is a field of
    `schema` (a search's has `space`, `sampler`, `search`; a retrain's `model`, `train`). Read as plain
    YAML: run directories sit below the config loader, which looks up the spaces and samplers."""
    if not (out / CONFIG_FILE).is_file():
        return True  # killed before it wrote its config: nothing there identifies another command
    try:
        saved = OmegaConf.to_container(OmegaConf.load(out / CONFIG_FILE))
    except Exception:  # unreadable or not YAML: no run of ours wrote it
        return False
    return isinstance(saved, dict) and set(saved) - {"_meta"} <= {f.name for f in fields(schema)}


def decide(out: Path, resume: bool, done: str, schema: type) -> bool:
    """Whether the run in `out` resumes, after clearing a dead run; refuses what must not be touched.

    Args:
        resume: a resume was asked for (`--resume`, or an elastic restart that found a checkpoint).
        done: the file a finished run of this command leaves (`alphas.json`, `metrics.json`).
        schema: the command's config dataclass (a dead run of another command is not ours to clear).
    """
    contents = _contents(out)
    checkpoint, finished = (out / CHECKPOINT).is_file(), (out / done).is_file()
    if resume and checkpoint:
        return True
    if not contents:
        return False
    if checkpoint:
        raise UserError(f"out_dir {out} holds a run with a checkpoint; resume it with --resume {out} "
                        "or choose another out_dir")  # fmt: skip
    if finished:
        raise UserError(f"out_dir {out} holds a finished run ({done}); choose another out_dir")
    foreign = sorted(contents - set(RUN_OUTPUTS))
    if foreign or not _same_command(out, schema):
        what = f"files no run wrote: {', '.join(foreign[:3])}" if foreign else "another command's run"
        raise UserError(f"out_dir {out} is not empty ({what}); choose another out_dir")
    print(f"nas: {out} holds a run that stopped before its first checkpoint: starting it over",
          file=sys.stderr, flush=True)  # fmt: skip
    clear_outputs(out)
    return False


# --- the claim --------------------------------------------------------------------------------------------


@dataclass
class RunDir:
    """A claimed run directory: `resume` is the final decision; `created` whether this claim made it."""

    path: Path
    resume: bool
    created: bool = False

    @contextlib.contextmanager
    def setup(self) -> Iterator[None]:
        """Around building the run: if that fails, a directory this claim created is removed again, so
        a refused command leaves nothing behind."""
        try:
            yield
        except BaseException:
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise


def _make_dir(path: Path) -> bool:
    """Create `path` if absent; True if this call created it."""
    if path.exists() and not path.is_dir():
        raise UserError(f"out_dir {path} exists and is not a directory")
    try:
        path.mkdir(parents=True)
        return True
    except FileExistsError:
        if not path.is_dir():
            raise UserError(f"out_dir {path} exists and is not a directory") from None
        return False
    except OSError as exc:  # read-only parent, a file in the path, too long a name
        raise UserError(f"cannot create out_dir {path}: {exc.strerror}") from None


@contextlib.contextmanager
def claim(out_dir: str | Path, resume: bool, done: str, schema: type) -> Iterator[RunDir]:
    """Claim `out_dir` for the life of the context and decide how the run starts (see the module notes).

    Raises:
        UserError: held by another live process, not writable, or holding what must not be touched.
    """
    path = Path(out_dir)
    if resume and not (path / CONFIG_FILE).is_file():
        raise UserError(f"cannot resume {path}: no config.yaml there")
    created = _make_dir(path)
    try:
        lock = acquire(path)
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        run = RunDir(path, decide(path, resume, done, schema), created)
        remove_torn_temps(path)
        yield run
    finally:
        release(lock)
