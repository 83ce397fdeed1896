"""Search progress on stderr, read from the study's storage (so it follows every worker)."""
from __future__ import annotations

from nasscale.reports.progress import Progress as Bar
from nasscale.search.objective import requeued, trial_status


class Progress:
    """Polls the Optuna study and draws trials done out of the target, with the count of
    trials that are feasible, over budget, stopped early (with a pruner, or once there is
    one), failed and running."""

    def __init__(self, study, target: int | None, enabled: bool = True, score: str = "score",
                 stopping: bool = False):
        self.study = study
        self.stopping = stopping
        self.start = self._counts()["done"]
        total = (target - self.start) if target is not None else 0
        self.bar = Bar(max(total, 1), "search", enabled=enabled and target != 0)

    def _counts(self, trials=None) -> dict[str, int]:
        counts = {"feasible": 0, "over budget": 0, "stopped early": 0, "failed": 0,
                  "running": 0}
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        retried = requeued(trials)
        for t in trials:
            status = trial_status(t, retried)
            if status in ("interrupted", "surplus"):
                continue  # re-queued or surplus: not one of the study's trials
            counts[status] = counts.get(status, 0) + 1
        counts["done"] = sum(counts[k] for k in ("feasible", "over budget", "stopped early",
                                                 "failed"))
        return counts

    def text(self, c: dict[str, int]) -> str:
        stopped = (f", stopped early {c['stopped early']}"
                   if self.stopping or c["stopped early"] else "")
        return (f"ok {c['feasible']}, over budget {c['over budget']}{stopped}, "
                f"failed {c['failed']}, running {c['running']}")

    def update(self, trials=None) -> None:
        """Redraw from ``trials`` (default: read the study)."""
        if not self.bar.enabled:
            return
        c = self._counts(trials)
        done = c["done"] - self.start
        if done > self.bar.total:  # a timeout-only study has no target: grow as it goes
            self.bar.total = done
        self.bar.update(done, self.text(c))

    def close(self) -> None:
        self.bar.close()
