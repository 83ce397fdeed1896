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
        parser.add_argument("--timeout", type=float, help="stop starting trials after S seconds "
                            "(default: the study's 'timeout')")
        parser.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user@host/db "
                            "with the password in ~/.pgpass or PGPASSWORD, not in the URL "
                            "(default: a journal file in the output folder)")
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

        from nasscale.search import (
            RunOptions,
            chance_warning,
            check_study_name,
            load_study,
            redact,
            run_search,
            summary_text,
        )

        study = load_study(args.study)
        if not (math.isfinite(args.storage_retry) and args.storage_retry >= 0):
            raise NasscaleError(f"--storage-retry: must be a number of seconds >= 0, "
                                f"got {args.storage_retry:g}")
        name = study.name if args.study_name is None else check_study_name(args.study_name,
                                                                           "--study-name")
        if args.storage and redact(args.storage) != args.storage:
            print("nasscale: warning: --storage holds a password, which other users of this "
                  "machine can read (ps, shell history); leave it out of the URL and put it in "
                  "~/.pgpass or PGPASSWORD", file=sys.stderr)
        out = Path(args.out or Path("runs") / name)
        try:
            summary = run_search(study, RunOptions(
                out=out, n_trials=args.n_trials, timeout=args.timeout, storage=args.storage,
                study_name=args.study_name, workers=args.workers,
                progress=not args.no_progress, own_budgets=args.own_budgets,
                storage_retry=args.storage_retry))
        except KeyboardInterrupt:  # while setting up or writing: the journal has the trials
            print(f"nasscale: interrupted; {interrupted_hint(args, out, study)}", file=sys.stderr)
            return 130
        print(summary_text(summary, out))
        warning = chance_warning(summary)
        if warning:
            print(f"nasscale: warning: {warning}", file=sys.stderr)
        if summary.get("interrupted"):
            print(f"nasscale: interrupted; {interrupted_hint(args, out, study)}", file=sys.stderr)
            return 130
        return 0


def resume_command(args) -> str:
    """The command that resumes this search: the same study file and options (a password in
    the storage URL shown as ***)."""
    import shlex

    from nasscale.search import redact

    words = ["nasscale", "search", args.study]
    for option, value in (("--out", args.out), ("--storage", redact(args.storage) or None),
                          ("--study-name", args.study_name), ("--n-trials", args.n_trials),
                          ("--timeout", args.timeout)):
        if value is not None:
            words += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    if args.workers != 1:
        words += ["--workers", str(args.workers)]
    if args.storage_retry != 300.0:
        words += ["--storage-retry", f"{args.storage_retry:g}"]
    words += [flag for flag, on in (("--own-budgets", args.own_budgets),
                                    ("--no-progress", args.no_progress)) if on]
    return shlex.join(words)


def interrupted_hint(args, out, study=None) -> str:
    """What an interrupted search keeps (in ``--storage``, the study file's ``storage`` or the
    journal in ``out``), and the exact command that continues it."""
    from nasscale.search import describe_storage

    where = describe_storage(args.storage or getattr(study, "storage", None), out)
    return (f"finished trials are kept in {where}; re-run the same command to resume: "
            f"{resume_command(args)}")
