"""Text for ``nasscale cost`` and ``nasscale lut``: a record, a prediction, a table summary."""
from __future__ import annotations

from collections import Counter

from nasscale.latency.measure import LatencyRecord
from nasscale.latency.table import LatencyTable, Prediction
from nasscale.reports.text import si, table


def record_lines(rec: LatencyRecord, prediction: Prediction | None = None,
                 probe: dict | None = None) -> list[str]:
    s, d = rec.stats, rec.diagnostics
    rounds = f"{d['rounds']} rounds" + (f" of {d['rounds_measured']} measured"
                                        if d["rounds_measured"] != d["rounds"] else "")
    lines = [
        f"{rec.name} at {rec.resolution}x{rec.resolution}, batch {rec.key.batch}",
        f"params    {rec.params:,} ({si(rec.params)})",
        f"FLOPs     {rec.flops:,} ({si(rec.flops)}) per image",
        f"latency   p50 {s.p50:.3f} ms   p90 {s.p90:.3f} ms   min {s.min:.3f} ms   "
        f"spread {100 * s.spread:.1f} %   ({s.n} timed runs in {rounds}, "
        f"{d['warmup_runs']} warm-up)",
    ]
    if prediction is not None:
        err = 100 * (prediction.total_ms / s.p50 - 1)
        n_ex = len(prediction.extrapolated)
        how = ("the table's probe, timed whole when the table was built" if
               prediction.timed_whole else f"{len(prediction.units)} units, {n_ex} "
               f"extrapolated, overhead {prediction.overhead_ms:.3f} ms")
        lines.append(f"predicted {prediction.total_ms:.3f} ms   ({err:+.1f} % vs measured p50; "
                     f"{how})")
    if probe is not None:
        r = probe["ratio"]
        note = ("" if abs(r - 1) <= 0.05 else ": this machine's speed has changed since the "
                "table was measured, so predictions are off by about that much (rebuild the "
                "table, or scale predictions by it)")
        lines.append(f"probe     {probe['network']}: {probe['now_ms']:.3f} ms now, "
                     f"{probe['table_ms']:.3f} ms when the table was built (x{r:.2f}){note}")
        if prediction is not None:
            now = prediction.total_ms * r
            lines.append(f"          predicted x{r:.2f} = {now:.3f} ms at the speed now "
                         f"({100 * (now / s.p50 - 1):+.1f} % vs measured p50)")
    if rec.compile_s:
        lines.append(f"compile   {rec.compile_s:.1f} s (not timed)")
    lines.append(f"key       {rec.key.describe()}")
    return lines


def warnings_for(rec: LatencyRecord) -> list[str]:
    """Lines for stderr when the measurement is not that of a quiet machine."""
    d, out = rec.diagnostics, []
    if d.get("contended_rounds"):
        out.append(f"warning: the CPU was busy: {d['preempted_runs']} runs were preempted by "
                   "other processes, so the wall-clock latency includes waiting (measure on a "
                   "quiet machine, or use --clock cpu with --threads 1)")
    load = d.get("other_load")
    if load is not None and load > 0.25:
        out.append(f"warning: other processes kept {load:.1f} cores busy during the measurement; "
                   "on shared cores this slows the network too")
    if not d.get("stable", True):
        out.append("warning: the timed rounds disagreed by more than "
                   f"4 % ({', '.join(f'{m:.2f}' for m in d['round_p50_ms'])} ms); "
                   "the fastest were kept")
    return out


def prediction_rows(prediction: Prediction, measured_ms: list[float] | None = None,
                    overhead_ms: float | None = None) -> str:
    """Per-unit predicted latency, next to the unit's latency measured inside this network when
    ``measured_ms`` (one per unit, chain order) is given."""
    def source(u):
        return "extrapolated: " + u.basis if u.extrapolated else "table"

    if measured_ms is None:
        rows = [(u.label, u.key, f"{u.ms:.3f}", source(u)) for u in prediction.units]
        rows.append(("overhead", "framework (end to end - sum of units)",
                     f"{prediction.overhead_ms:.3f}", "table"))
        return table(("unit", "key", "predicted ms", "source"), rows, right="predicted ms")
    rows = [(u.label, u.key, f"{m:.3f}", f"{u.ms:.3f}", f"{100 * (u.ms / m - 1):+.1f}%",
             source(u)) for u, m in zip(prediction.units, measured_ms)]
    rows.append(("overhead", "framework (end to end - sum of units)", f"{overhead_ms:.3f}",
                 f"{prediction.overhead_ms:.3f}", "", "table"))
    return table(("unit", "key", "in-context ms", "predicted ms", "error", "source"), rows,
                 right="in-context ms predicted ms error")


def table_summary(tbl: LatencyTable, path: str) -> list[str]:
    kinds = Counter(e.kind for e in tbl.entries.values())
    ms_by_kind: dict[str, list[float]] = {}
    for e in tbl.entries.values():
        ms_by_kind.setdefault(e.kind, []).append(e.ms)
    contexts = Counter(len(e.samples_ms) for e in tbl.entries.values())
    alone = sum(1 for e in tbl.entries.values() if e.context == "alone")
    lines = [f"{path}: {len(tbl)} entries from {tbl.carriers} carrier networks",
             f"key       {tbl.key.describe()}",
             f"sources   {', '.join(tbl.sources) or '(none complete)'}",
             "probe     " + (f"{tbl.probe_spec().name}: " + ", ".join(
                 f"{s['ms']:.3f} ms ({s['at']})" for s in tbl.probe["samples"])
                 if tbl.probe else "(none)"),
             f"overhead  {tbl.overhead_ms:.3f} ms (median of {len(tbl.overhead_samples_ms)} "
             "carriers: end to end - sum of units)",
             "contexts  " + ", ".join(f"{n} entries measured in {c}" for c, n in
                                       sorted(contexts.items()))
             + (f"; {alone} timed alone" if alone else ""), ""]
    lines.append(table(("kind", "entries", "min ms", "max ms"),
                       [(k, n, f"{min(ms_by_kind[k]):.3f}", f"{max(ms_by_kind[k]):.3f}")
                        for k, n in sorted(kinds.items())], right="entries min ms max ms"))
    return lines


def warn_if_noisy(name: str, record) -> None:
    """What ``nasscale cost`` warns of (a busy CPU, rounds that disagree), on stderr: a budget
    or reference measured under load is not what the same network takes on a quiet machine."""
    import sys

    try:
        lines = warnings_for(record)
    except (AttributeError, KeyError, TypeError):  # a stand-in record (tests) has no diagnostics
        return
    for line in lines:
        print(f"nasscale: {name}: {line}", file=sys.stderr)
