"""A progress bar on stderr that reads the study's storage (so it also follows workers)."""
from __future__ import annotations

import sys


class Progress:
    def __init__(self, study, target: int | None, enabled: bool = True, score: str = "score"):
        self.study = study
        self.enabled = enabled and target != 0
        self.bar = None
        self.start = self._counts()["done"]
        self.score = score
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=None if target is None else target - self.start,
                            desc="search", unit="trial", file=sys.stderr, dynamic_ncols=True,
                            leave=True)

    def _counts(self) -> dict[str, int]:
        counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
        for t in self.study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        counts["done"] = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
        return counts

    def update(self) -> None:
        if not self.bar:
            return
        c = self._counts()
        self.bar.n = c["done"] - self.start
        self.bar.set_postfix_str(f"ok {c['COMPLETE']}, over budget {c['PRUNED']}, "
                                 f"failed {c['FAIL']}, running {c['RUNNING']}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar:
            self.bar.close()
            self.bar = None
