"""Atomic file writes: a crash or a full disk leaves the old file or the new one, never a torn one.

Every file `nas` writes (genotypes, configs, checkpoints, metrics, reports, plots) goes through
`atomic_write`; `check_output_path` refuses, before any work, an output path that can never be a file.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from nas.core.errors import UserError


def check_output_path(path: str | Path) -> Path:
    """Refuse, in one line, an output path that can never be written as a file: a directory, or one
    under an existing file. Returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; name a file to write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is a file, not a directory")
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a temp file in the same folder, fsync, then rename it over `path`: a crash leaves
    the old file or the new one, never a torn one. The temp file is created with mode 0o666, so the
    kernel applies the umask (mkstemp's 0600 would need a chmod and a read of the process-wide umask)."""
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # another writer's temp file: draw another name
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`text` (UTF-8) to `path` through `atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode()))


MAX_JSON_BYTES = 64 << 20  # a run's JSON files (metrics, reports, cost tables) are kilobytes


def read_json_object(path: str | Path, what: str) -> dict:
    """The JSON object in `path` (a file `nas` wrote: metrics.json, a cost table, a report), refused in one
    line naming `what` if it is unreadable, larger than `MAX_JSON_BYTES`, not JSON, or not an object: a
    crafted or corrupt file is never a traceback further on."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_JSON_BYTES:
        raise UserError(f"{what} {path} is over {MAX_JSON_BYTES >> 20} MiB: not a file nas wrote")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise UserError(f"{what} {path} is not valid JSON (corrupt, or not written by nas)") from None
    if not isinstance(value, dict):
        raise UserError(f"{what} {path} holds a JSON {type(value).__name__}, not an object")
    return value
