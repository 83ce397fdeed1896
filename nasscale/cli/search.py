"""``nasscale search``: run or resume a study."""
from __future__ import annotations

import math
import sys

from nasscale.cli.base import Command
from nasscale.errors import NasscaleError


class SearchCommand(Command):
    name = "search"
    help = "run an architecture search study (studies/*.yaml); re-running resumes it"

    def add_arguments(self, parser):
        parser.add_argument("study", help="study file, e.g. studies/quickstart.yaml")
        parser.add_argument("--n-trials", type=int, help="finished trials the study should "
                            "have (default: the study's 'trials'); a resumed study runs the rest")
        parser.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
        parser.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user:pw@host"
                            "/db (default: a journal file in the output folder)")
        parser.add_argument("--study-name", help="Optuna study name (default: the study's name)")
        parser.add_argument("--out", help="output folder (default: runs/<study name>)")
        parser.add_argument("--workers", type=int, default=1,
                            help="worker processes on this machine sharing the storage")
        parser.add_argument("--own-budgets", action="store_true",
                            help="join a study whose relative latency budgets were measured on "
                            "other hardware by measuring them again here (this worker's "
                            "limits are its own); without it such a worker is refused")
        parser.add_argument("--storage-retry", type=float, default=300.0, metavar="S",
                            help="keep retrying a storage that does not answer for S seconds "
                            "before stopping (default 300)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(self, args):
        from pathlib import Path

        from nasscale.search import RunOptions, load_study, run_search, summary_text

        study = load_study(args.study)
        if args.n_trials is not None and args.n_trials < 1:
            raise NasscaleError(f"--n-trials: must be an integer >= 1, got {args.n_trials}")
        if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
            raise NasscaleError(f"--timeout: must be a number of seconds > 0, "
                                f"got {args.timeout:g}")
        if not (math.isfinite(args.storage_retry) and args.storage_retry >= 0):
            raise NasscaleError(f"--storage-retry: must be a number of seconds >= 0, "
                                f"got {args.storage_retry:g}")
        out = Path(args.out or Path("runs") / (args.study_name or study.name))
        summary = run_search(study, RunOptions(
            out=out, n_trials=args.n_trials, timeout=args.timeout, storage=args.storage,
            study_name=args.study_name, workers=args.workers, progress=not args.no_progress,
            own_budgets=args.own_budgets, storage_retry=args.storage_retry))
        print(summary_text(summary, out))
        if summary.get("interrupted"):
            print("nasscale: interrupted; finished trials are kept, re-run the same command "
                  "to resume", file=sys.stderr)
            return 130
        return 0
