"""The one exception type for mistakes a user can fix (bad config, bad file, missing data), and the one
warning line for input that is accepted but not what it seems.

The CLI turns a `UserError` into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

import errno
import os
import sys

# errors of the file system or the machine that a user fixes (space, permissions, paths), reported in one line
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT, errno.EIO})  # fmt: skip


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def printable(text: object, limit: int | None = None) -> str:
    """`text` safe to print on a terminal as (part of) one line: control characters (newlines, terminal
    escape sequences, NUL) and other unprintable characters written as Python escapes (`\x1b`); cut to
    `limit` characters if given. Strings from files (a genotype's provenance, a config's name) and the
    user input that error messages quote go through it."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


_warned: set[str] = set()  # the warnings this process has printed (each is said once)


def warn(message: str, once: str | None = None) -> None:
    """Say `message` as one line on stderr (`nas: warning: ...`), from rank 0 only under torchrun: for
    input that is accepted but does not do what it seems to (a deprecated name, a key that does nothing for
    this command). Said once per process per `once` (default: per message)."""
    key = message if once is None else once
    if key in _warned or os.environ.get("RANK", "0") != "0":
        return
    _warned.add(key)
    print(f"nas: warning: {printable(message)}", file=sys.stderr, flush=True)
