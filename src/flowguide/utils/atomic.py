"""Atomic file targets: write to a temporary sibling, rename on success.

A killed job therefore never leaves a half-written target behind, which matters because
Snakemake treats an existing file as done.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

PART_SUFFIX = ".part"
_HOST = socket.gethostname().replace(".", "_")


def _part_prefix(target: Path) -> str:
    return f".{target.name}.{_HOST}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(target: str | os.PathLike) -> list[Path]:
    """Delete temporaries of ``target`` left by killed writers on this host (their process is
    gone); returns them. A live writer's temporary, or another host's, is left alone."""
    target = Path(target)
    prefix = _part_prefix(target)
    removed = []
    for part in target.parent.glob(f"{glob.escape(prefix)}*{PART_SUFFIX}"):
        pid_text = part.name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def current_umask() -> int:
    """The process umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary is ``.<name>.<host>-<pid>.<random>.part``; leftovers of killed writers of the
    same target are removed when the next writer starts.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_part_prefix(target)}{os.getpid()}.", suffix=PART_SUFFIX, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; the target gets what a plain open() would give (0666 & ~umask), so
    # labmates on a shared cluster can read the results.
    os.chmod(tmp_path, 0o666 & ~current_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
