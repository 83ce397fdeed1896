"""Search progress on stderr, read from the study's storage (so it follows every worker)."""
from __future__ import annotations

from nasscale.reports.progress import Progress as Bar


class Progress:
    """Polls the Optuna study and draws trials done out of the target, with the count of
    trials that are feasible, over budget, failed and running."""

    def __init__(self, study, target: int | None, enabled: bool = True, score: str = "score"):
        self.study = study
        self.start = self._counts()["done"]
        total = (target - self.start) if target is not None else 0
        self.bar = Bar(max(total, 1), "search", enabled=enabled and target != 0)

    def _counts(self) -> dict[str, int]:
        counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
        for t in self.study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        counts["done"] = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
        return counts

    def update(self) -> None:
        if not self.bar.enabled:
            return
        c = self._counts()
        done = c["done"] - self.start
        if done > self.bar.total:  # a timeout-only study has no target: grow as it goes
            self.bar.total = done
        self.bar.update(done, f"ok {c['COMPLETE']}, over budget {c['PRUNED']}, "
                              f"failed {c['FAIL']}, running {c['RUNNING']}")

    def close(self) -> None:
        self.bar.close()
