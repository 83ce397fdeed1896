"""How many CPU threads training uses, and a warning when other processes share the cores.

PyTorch's CPU kernels use one OpenMP thread per core by default.  When another process keeps
some of those cores busy, every parallel region waits for its slowest thread, which shares a
core with someone else: a step can take ten times as long as with fewer threads (a study's
parent trained at 13 s a step with the default threads and 1 s with one thread while other
processes ran).  So training takes, unless told otherwise, the cores that other processes
leave idle, measured over a quarter of a second before it starts (at least one), and says so
when that is fewer than the machine has.  ``benchmarks/training_threads.py`` measures default,
one thread and all cores on an idle and a loaded machine.

An explicit thread count is used as given (at most the machine's cores), with a warning when
other processes are busy on the cores it needs.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from nasscale.errors import NasscaleError

#: seconds over which the other processes' load is measured before training starts
WINDOW_S = 0.25
#: a measurement is reused for this long (a study or NetAdapt trains candidate after candidate)
REUSE_S = 30.0
_said: set[str] = set()  # each warning once per process
_last: list = []  # [(time, busy)]


def cores() -> int:
    """CPU cores this process may run on (``nasscale.latency.available_cores``)."""
    from nasscale.latency import available_cores

    return available_cores()


def check_threads(value, where: str = "threads") -> None:
    """An integer from 1 to the machine's cores, or ``None`` (chosen at start)."""
    if value is None:
        return
    n = cores()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
        raise NasscaleError(f"{where}: must be an integer from 1 to {n} (this machine's cores) "
                            f"or null (the cores other processes leave idle), got {value!r}")


def other_busy_cores(window: float = WINDOW_S) -> float | None:
    """Cores other processes keep busy (``None`` where the system does not say: not Linux)."""
    from nasscale.latency.timing import _busy_snapshot, other_load

    now = time.monotonic()
    if _last and now - _last[0][0] < REUSE_S:
        return _last[0][1]
    before = _busy_snapshot()
    if before is None:
        return None
    time.sleep(window)
    busy = other_load(before, _busy_snapshot())
    _last[:] = [(time.monotonic(), busy)]
    return busy


_MEASURE = object()


def choose_threads(requested: int | None, busy=_MEASURE) -> tuple[int, str | None]:
    """(threads, a warning or ``None``) for training on the CPU: ``requested`` if given, else
    the cores other processes leave idle (``busy``: cores, ``None`` for unknown; measured here
    when not given)."""
    n = cores()
    busy = other_busy_cores() if busy is _MEASURE else busy
    if busy is None or busy < 0.5:
        return (requested or n), None
    idle = max(1, n - round(busy))
    if requested is None:
        if idle >= n:
            return n, None
        return idle, (f"other processes keep {busy:.1f} of {n} cores busy: training with "
                      f"{idle} thread(s) (threads / --threads to choose)")
    if requested > idle:
        return requested, (f"other processes keep {busy:.1f} of {n} cores busy: {requested} "
                           f"training threads share cores with them, which can make each step "
                           f"several times slower; {idle} thread(s) would not")
    return requested, None


def say_once(message: str | None) -> None:
    if message and message not in _said:
        _said.add(message)
        print(f"nasscale: {message}", file=sys.stderr, flush=True)


@contextmanager
def training_threads(requested: int | None, on_cpu: bool = True):
    """Set torch's intra-op threads for a training run (see module doc), restore them after;
    yields the count used."""
    import torch

    if not on_cpu:
        yield torch.get_num_threads()
        return
    check_threads(requested)
    threads, warning = choose_threads(requested)
    say_once(warning)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
