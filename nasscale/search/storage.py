"""Optuna storages: a journal file by default, Optuna's RDB storage for many machines.

- default: ``<out>/study.journal`` through ``optuna.storages.JournalStorage`` — nothing to
  start, several processes on one machine can share it (file locks), and every finished trial
  is on disk the moment it finishes, so a ``kill -9`` loses only the trial that was running;
- ``postgresql://user:password@host/db`` (or any SQLAlchemy URL, ``sqlite:///...``): Optuna's
  ``RDBStorage`` with heartbeats, so trials of a worker that died are failed and retried by the
  survivors.  A URL without a driver uses the one the ``postgres`` extra installs (psycopg2;
  SQLAlchemy 2.1 alone would pick psycopg 3);
- ``journal:/path/file`` or a path ending in ``.journal``: an explicit journal file.

Passwords in URLs are never printed or written: ``redact(url)`` is what reports, errors and
the resume hint show (``user:***@``, and ``***`` for any query parameter named like a secret:
``password=``, ``passwd=``, ``pwd=``, ``sslpassword=``, ``token=``, ...).  A URL need not
carry one at all: ``postgresql://user@host/db`` with the password in ``~/.pgpass`` or
``PGPASSWORD``, which libpq (under psycopg2 and psycopg 3) reads itself.

A journal whose last line was cut off (a process killed while appending) is repaired when it
is opened: the file as it was is kept beside it (``study.journal.damaged-<time>``), the cut
line is removed, and every finished trial stays (``repair_journal_tail``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from nasscale.errors import NasscaleError
from nasscale.search.optuna_api import fail_trial

RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


#: ``user:password@`` after ``scheme://``, up to the last ``@`` before the query (a password
#: may hold ``@`` and ``/``)
_USERINFO = re.compile(r"(?<=://)([^:/@?#\s]*):[^?#\s]*@")
#: ``name=value`` (a URL's query, a libpq DSN) whose name looks like a secret
_SECRET_PARAM = re.compile(
    r"(?i)(?<![\w.-])([\w.-]*(?:pass|pwd|secret|token|credential|api_?key|access_?key)"
    r"[\w.-]*)=([^&;#\s]*)")


def redact(text: str | None) -> str:
    """``text`` (a storage URL, or an error message holding one) with every secret replaced
    by ``***``: the password of ``user:password@`` and the value of any ``password=``,
    ``passwd=``, ``pwd=`` or other parameter named like a secret."""
    if not text:
        return ""
    text = _USERINFO.sub(r"\1:***@", text)
    return _SECRET_PARAM.sub(r"\1=***", text)


def is_rdb(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].split("+", 1)[0] in RDB_SCHEMES


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def normalise_url(url: str | None) -> str | None:
    """``postgresql://`` and ``postgres://`` with the driver that is installed: psycopg2 (what
    the ``postgres`` extra installs) before psycopg 3.  A URL naming its driver is kept."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        driver = "psycopg2" if _module_available("psycopg2") or not _module_available(
            "psycopg") else "psycopg"
        return f"postgresql+{driver}://{rest}"
    return url


def journal_path(url: str | None, out_dir: Path) -> Path | None:
    """The journal file of ``url`` (``None``: ``out_dir/study.journal``); ``None`` for a
    database URL."""
    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        return Path(url.removeprefix("journal:")) if url else out_dir / "study.journal"
    return None


@contextlib.contextmanager
def setup_lock(url: str | None, out_dir: Path, timeout: float = 600.0):
    """Held while a process creates or joins a study and resolves what all workers share
    (Optuna's tables, budgets, references): processes that start together on a fresh storage
    wait for the first instead of racing it.  A journal (or SQLite file) takes a file lock
    beside it (removed again when it is released); PostgreSQL an advisory lock; other
    databases none."""
    path = journal_path(url, out_dir)
    if path is None and url and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    if path is not None:
        with _file_lock(path.with_name(path.name + ".setup.lock"), path, timeout):
            yield
        return
    if not url or not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy  # heavy: sqlalchemy (0.1 s), for PostgreSQL only

    key = int.from_bytes(hashlib.sha256(b"nasscale-setup").digest()[:8], "big", signed=True)
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        conn = engine.connect()
    except Exception as err:  # connection refused, auth failure, missing driver, ...
        raise NasscaleError(f"storage {redact(url)}: cannot open: {_first_line(err)}") from None
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()
        engine.dispose()


@contextlib.contextmanager
def _file_lock(lock_file: Path, path: Path, timeout: float):
    """An exclusive ``flock`` on ``lock_file``, which is removed when the lock is released
    (no empty file stays beside the journal).  A process that waited on a file the holder
    then removed locks a file nobody else sees: it checks that the file it locked is still the
    one at that path, and otherwise opens the path again, so two processes never hold it."""
    import fcntl  # optional: POSIX-only module (absent on Windows)

    deadline = time.monotonic() + timeout
    while True:
        handle = _open_lock(lock_file, path)
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise NasscaleError(f"{path}: another process has held the lock "
                                            f"{lock_file} for {timeout:.0f} s") from None
                    time.sleep(0.1)
        except BaseException:
            handle.close()
            raise
        if _same_file(handle, lock_file):
            break
        handle.close()  # removed (or replaced) while this process waited: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_file.unlink()  # before unlocking: a waiter then sees that it is gone
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _open_lock(lock_file: Path, path: Path):
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        return open(lock_file, "a+")
    except OSError as err:
        raise NasscaleError(f"storage {path}: cannot create {lock_file.name} beside it: "
                            f"{err.strerror or err}") from None


def _same_file(handle, lock_file: Path) -> bool:
    """Whether the open ``handle`` is the file now at ``lock_file``."""
    try:
        now = os.stat(lock_file)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return redact(text)


def outputs_lock(out_dir: Path, timeout: float = 600.0):
    """Held while a process reads the trials and writes the outputs of ``out_dir``: two
    processes finishing one study into one folder write one after the other, the later from
    the later read."""
    return _file_lock(out_dir / ".outputs.lock", out_dir, timeout)


# --- a journal whose last line was cut off -----------------------------------------------

def repair_journal_tail(path: Path) -> Path | None:
    """Cut a journal back to its last whole line when its final line is incomplete (no line
    end: a process killed while appending) or not JSON, keeping the file as it was beside it
    (``<name>.damaged-<time>``) and saying so on one line; returns the copy (``None``: the
    journal was whole).  Done under Optuna's own journal lock, so no live write is cut."""
    if not path.is_file() or _tail_start(path) is None:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        start = _tail_start(path)  # again, now that no process can be writing
        if start is None:
            return None
        copy = _damaged_name(path)
        shutil.copy2(path, copy)
        os.truncate(path, start)
    finally:
        lock.release()
    print(f"nasscale: storage {path}: its last line was cut off (a write that never finished); "
          f"the file as it was is kept as {copy.name}, the cut line is removed, and every "
          "finished trial is kept", file=sys.stderr)
    return copy


def _tail_start(path: Path) -> int | None:
    """The offset of the journal's last line when that line is damaged (no line end, or not
    JSON), else ``None``."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        start = _last_line_start(f, size)
        f.seek(start)
        line = f.read()
    if not line.endswith(b"\n"):
        return start
    try:
        json.loads(line)
    except ValueError:
        return start
    return None


def _last_line_start(f, size: int, step: int = 65536) -> int:
    """The offset just after the last line end before the file's final byte (0: one line)."""
    end = size - 1
    while end > 0:
        begin = max(0, end - step)
        f.seek(begin)
        found = f.read(end - begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        end = begin
    return 0


def _damaged_name(path: Path) -> Path:
    """``<name>.damaged-<YYYYmmdd-HHMMSS>`` beside ``path`` (``-2``, ``-3``... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    copy = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 2
    while copy.exists():
        copy = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    return copy


def trial_user_attrs(study_name: str, out_dir: Path, number: int,
                     url: str | None = None) -> dict:
    """The user attributes of trial ``number`` of a stored study."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(url, out_dir))
    return dict(study.trials[number].user_attrs)


def open_storage(url: str | None, out_dir: Path):
    """The Optuna storage object for ``url`` (``None``: the journal file in ``out_dir``)."""
    path = journal_path(url, out_dir)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and not path.is_file():
                raise NasscaleError(f"storage {path}: is not a file")
            repair_journal_tail(path)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise NasscaleError(f"storage {path}: cannot open: {err.strerror or err}") from None
        except ValueError as err:  # json.JSONDecodeError: a line of the log is damaged
            raise NasscaleError(f"storage {path}: a line of the journal is not valid JSON "
                                f"({_first_line(err)}); the file is damaged — restore it or "
                                "use another --out") from None
    url = normalise_url(url)
    if is_rdb(url):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=10, grace_period=30,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                    engine_kwargs=None if url.startswith("sqlite") else {"pool_pre_ping": True})
        except Exception as err:  # connection refused, auth failure, missing driver, ...
            raise NasscaleError(f"storage {redact(url)}: cannot open: "
                                f"{_first_line(err)}") from None
    raise NasscaleError(f"storage: {redact(url)!r} is not a journal path or a database URL "
                        f"({', '.join(s + '://' for s in RDB_SCHEMES)})")


def worker_tag() -> str:
    """``host:pid`` of this process, stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale_trials(study) -> list[int]:
    """Fail the RUNNING trials whose worker on this host is dead (a ``kill -9``, a crash) and
    enqueue their parameters again, so a resumed study re-runs them.  RDB storages do this
    themselves with heartbeats; a journal file has none."""
    host = socket.gethostname()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = trial.user_attrs.get("worker", "")
        worker_host, _, pid = tag.rpartition(":")
        if worker_host != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        fail_trial(study, trial, f"interrupted: worker {tag} died; re-queued",
                   system_reason=f"interrupted: worker {tag} died")
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        recovered.append(trial.number)
    return recovered


# --- outages --------------------------------------------------------------------------------

def is_storage_error(err: BaseException | None, depth: int = 0) -> bool:
    """A database that does not answer — or an error raised while handling one (Optuna's
    own trial loop then fails with an ``UnboundLocalError`` whose context is the real one)."""
    if err is None or depth > 5:
        return False
    sqlalchemy = sys.modules.get("sqlalchemy")
    if isinstance(err, optuna.exceptions.StorageInternalError) or (
            sqlalchemy is not None and isinstance(err, sqlalchemy.exc.SQLAlchemyError)):
        return True
    return is_storage_error(err.__cause__ or err.__context__, depth + 1)


def storage_error_text(err: BaseException) -> str:
    """What went wrong with the storage, in one line: the database driver's own message (the
    innermost storage error of ``err``'s chain: "connection refused", "server closed the
    connection"), not Optuna's wrapper around it; passwords replaced by ``***``."""
    sqlalchemy = sys.modules.get("sqlalchemy")
    chain, seen = [], set()
    while err is not None and id(err) not in seen and len(chain) < 10:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    root = chain[-1]
    for e in reversed(chain):
        if sqlalchemy is not None and isinstance(e, sqlalchemy.exc.SQLAlchemyError):
            root = getattr(e, "orig", None) or e
            break
    text = str(root).strip()
    first = text.splitlines()[0].strip() if text else ""
    name = type(root).__name__
    return redact(f"{name}: {first}" if first and not first.startswith("(") else first or name)


class StorageDown(NasscaleError):
    """The storage did not answer for the whole retry period."""


def with_retry(fn, what: str, retry_for: float, storage: str | None = None):
    """``fn()``, retried with backoff (1, 2, 4 ... 30 s) while the storage does not answer,
    for ``retry_for`` seconds in all; then ``StorageDown``."""
    first = None
    delay = 1.0
    while True:
        try:
            return fn()
        except Exception as err:
            if not is_storage_error(err):
                raise
            now = time.monotonic()
            first = first or now
            text = storage_error_text(err)
            if now - first >= retry_for:
                raise StorageDown(
                    f"storage {redact(storage) or 'journal'}: no answer for {now - first:.0f} s "
                    f"while {what} ({text[:200]}); finished trials are kept, re-run the same "
                    "command to resume") from None
            print(f"nasscale: storage {redact(storage) or 'journal'} not answering while {what}"
                  f" ({text[:120]}); retrying in {delay:.0f} s", file=sys.stderr)
            time.sleep(delay)
            delay = min(30.0, delay * 2)


def quiet_storage_threads() -> None:
    """Optuna records heartbeats in a thread; when the database goes away that thread dies
    with a traceback on stderr.  The trial loop reports the outage (and retries) itself, so
    such a thread's storage error is dropped; any other thread error is shown as usual."""
    previous = threading.excepthook
    if getattr(previous, "_nasscale", False):
        return

    def hook(args) -> None:
        if not is_storage_error(args.exc_value):
            previous(args)

    hook._nasscale = True  # type: ignore[attr-defined]
    threading.excepthook = hook
