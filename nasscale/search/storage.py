"""Optuna storages: a journal file by default, Optuna's RDB storage for many machines.

- default: ``<out>/study.journal`` through ``optuna.storages.JournalStorage`` — nothing to
  start, several processes on one machine can share it (file locks), and every finished trial
  is on disk the moment it finishes, so a ``kill -9`` loses only the trial that was running;
- ``postgresql://user:password@host/db`` (or any SQLAlchemy URL, ``sqlite:///...``): Optuna's
  ``RDBStorage`` with heartbeats, so trials of a worker that died are failed and retried by the
  survivors;
- ``journal:/path/file`` or a path ending in ``.journal``: an explicit journal file.

Passwords in URLs are never printed or written: ``redact(url)`` is what reports show.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from nasscale.errors import NasscaleError

RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


def redact(url: str | None) -> str:
    """``postgresql://user:***@host/db``: the URL with any password replaced."""
    if not url:
        return ""
    return re.sub(r"(?<=://)([^:/@]*):([^@]*)@", r"\1:***@", url)


def is_rdb(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].split("+", 1)[0] in RDB_SCHEMES


def open_storage(url: str | None, out_dir: Path):
    """The Optuna storage object for ``url`` (``None``: the journal file in ``out_dir``)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:")) if url else out_dir / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if is_rdb(url):
        import warnings

        from optuna.storages import RetryHeartbeatStaleTrialCallback

        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=10, grace_period=30,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                    engine_kwargs=None if url.startswith("sqlite") else {"pool_pre_ping": True})
        except Exception as err:  # connection refused, auth failure, missing driver, ...
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise NasscaleError(f"storage {redact(url)}: cannot open: "
                                f"{redact(text)}") from None
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
    from optuna.trial import TrialState

    host = socket.gethostname()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = trial.user_attrs.get("worker", "")
        worker_host, _, pid = tag.rpartition(":")
        if worker_host != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        study._storage.set_trial_system_attr(trial._trial_id, "fail_reason",
                                             f"interrupted: worker {tag} died")
        study._storage.set_trial_user_attr(trial._trial_id, "reason",
                                           f"interrupted: worker {tag} died; re-queued")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        recovered.append(trial.number)
    return recovered
