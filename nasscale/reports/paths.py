"""Output paths checked before any work starts: ``output_file`` and ``output_dir``.

A command that measures, trains or converts for minutes and then fails to write its result has
wasted those minutes, so it checks its output path first: the folder is created, a folder given
where a file is wanted (or a file where a folder is wanted) is refused, and writing is tried by
creating and removing a probe file of a fresh name beside it.  Nothing that existed before is
removed or overwritten.  Every refusal is one ``NasscaleError`` naming the option and the path.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nasscale.errors import NasscaleError


def _fail(option: str, path: object, problem: str) -> NasscaleError:
    label = f"{option} {path}" if option else str(path)
    return NasscaleError(f"{label}: {problem}")


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _kind(p: Path, option: str, path: object) -> str:
    """``missing``, ``folder``, ``file`` or ``other`` (a device, a socket), or an error for a
    path the system cannot even look up (a name too long, a NUL byte)."""
    import stat

    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except (OSError, ValueError) as err:
        why = _why(err) if isinstance(err, OSError) else str(err)
        raise _fail(option, path, f"not a usable path: {why}") from None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _make_folder(folder: Path, option: str, path: object) -> None:
    """Create ``folder`` and its parents, or refuse when a file stands in the way."""
    existing = folder
    while _kind(existing, option, path) == "missing" and existing != existing.parent:
        existing = existing.parent
    if _kind(existing, option, path) != "folder":
        raise _fail(option, path, f"{existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _fail(option, path, f"cannot create the folder {folder}: {_why(err)}") from None


def _probe(folder: Path, option: str, path: object) -> None:
    """Create and remove a file of a fresh name in ``folder``: proof that it takes files."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".nasscale-", suffix=".probe", dir=folder)
    except OSError as err:
        raise _fail(option, path, f"cannot write in {folder}: {_why(err)}") from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | os.PathLike, option: str = "") -> Path:
    """``path`` as a file this process can write: its folder created, a folder or a
    non-writable file at ``path`` refused (``option`` names where the path came from)."""
    p = Path(path)
    kind = _kind(p, option, path)
    if kind == "folder":
        raise _fail(option, path, "is a folder; give a file name")
    if kind == "other":
        raise _fail(option, path, "is not a regular file")
    if kind == "file" and not os.access(p, os.W_OK):
        raise _fail(option, path, "is not writable")
    folder = p.parent
    _make_folder(folder, option, path)
    _probe(folder, option, path)
    return p


def output_dir(path: str | os.PathLike, option: str = "") -> Path:
    """``path`` as a folder this process can write files in, created if absent; a file at
    ``path`` refused (``option`` names where the path came from)."""
    p = Path(path)
    if _kind(p, option, path) not in ("missing", "folder"):
        raise _fail(option, path, "is a file, not a folder")
    _make_folder(p, option, path)
    _probe(p, option, path)
    return p


def resolve_path(value: str, file: str) -> str:
    """A path written in a file (a study's space, parent or table) is relative to that file
    when it exists there; a bare name (no separator, no .yaml/.yml/.json) is a name."""
    if (value.endswith((".yaml", ".yml", ".json")) or os.sep in value) and file \
            and not os.path.isabs(value):
        candidate = Path(file).parent / value
        if candidate.exists():
            return str(candidate)
    return value
