"""Property-based: every numeric command-line flag, fed generated malformed values (text,
NaN, infinities, negatives, zero where a count is needed, absurd magnitudes), ends in exit 2
with ONE line that names the flag — never a traceback, never a run that goes on for minutes
with the value (each case is cut off after ``BOUND_S`` seconds, which fails the test).

The flags are found by walking the CLI's parsers, so a new numeric flag without a row in
``KINDS`` fails ``test_every_numeric_flag_has_a_kind``."""
from __future__ import annotations

import argparse
import signal
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

from nasscale.cli import main, make_parser  # noqa: E402

TINY = str(Path(__file__).parent / "support" / "tiny_net.yaml")
BOUND_S = 60
EXAMPLES = 12  # per flag: about 40 flags x 12 cases a run

#: what each numeric flag takes: count (an integer >= 1), seed (an integer >= 0), positive (a
#: number > 0), nonneg (a number >= 0), fraction (a number in (0, 1)), unit (in (0, 1])
KINDS = {
    ("show", "--resolution"): "count", ("export", "--resolution"): "count",
    ("export", "--opset"): "count",
    ("prune", "--threads"): "count", ("prune", "--step"): "fraction",
    ("prune", "--decay"): "unit", ("prune", "--max-iterations"): "count",
    ("prune", "--seed"): "seed",
    ("train", "--epochs"): "count", ("train", "--batch-size"): "count",
    ("train", "--lr"): "positive", ("train", "--weight-decay"): "nonneg",
    ("train", "--warmup"): "fraction", ("train", "--ema"): "fraction",
    ("train", "--resolution"): "count", ("train", "--subset"): "count",
    ("train", "--val-fraction"): "fraction", ("train", "--image-size"): "count",
    ("train", "--threads"): "count", ("train", "--seed"): "seed",
    ("cost", "--resolution"): "count", ("cost", "--threads"): "count",
    ("cost", "--batch"): "count", ("cost", "--round-seconds"): "positive",
    ("lut build", "--threads"): "count", ("lut build", "--batch"): "count",
    ("lut build", "--contexts"): "count", ("lut build", "--seed"): "seed",
    ("search", "--n-trials"): "count", ("search", "--timeout"): "positive",
    ("search", "--workers"): "count", ("search", "--storage-retry"): "nonneg",
    ("supernet train", "--epochs"): "count", ("supernet train", "--batch-size"): "count",
    ("supernet train", "--lr"): "positive", ("supernet train", "--weight-decay"): "nonneg",
    ("supernet train", "--warmup"): "fraction", ("supernet train", "--resolution"): "count",
    ("supernet train", "--subnets-per-step"): "count", ("supernet train", "--probes"): "nonneg",
    ("supernet train", "--calibration-batches"): "count",
    ("supernet train", "--accumulate"): "count", ("supernet train", "--val-fraction"): "fraction",
    ("supernet train", "--subset"): "count", ("supernet train", "--threads"): "count",
    ("supernet train", "--seed"): "seed", ("supernet extract", "--calibration-batches"): "count",
}
#: absurd magnitudes: far above any bound a flag can sensibly accept
HUGE = st.sampled_from(["1e12", "1e308", "99999999999999999999", str(2 ** 64)])
TEXT = st.one_of(st.sampled_from(["abc", "", "nan", "inf", "-inf", "NaN", "1,5", "0x10",
                                  "1e999", " ", "☃"]),
                 st.text(alphabet="abcxyz!?%", min_size=1, max_size=6))
NEGATIVE = st.one_of(st.integers(max_value=-1).map(str),
                     st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
                     .map(repr))
MALFORMED = {
    "count": st.one_of(TEXT, NEGATIVE, st.just("0"), st.sampled_from(["1.5", "2.0"]), HUGE),
    "seed": st.one_of(TEXT, NEGATIVE, st.sampled_from(["1.5", str(2 ** 64)])),
    "positive": st.one_of(TEXT, NEGATIVE, st.just("0")),
    "nonneg": st.one_of(TEXT, NEGATIVE),
    "fraction": st.one_of(TEXT, NEGATIVE, st.sampled_from(["1", "1.0", "2", "1e9"])),
    "unit": st.one_of(TEXT, NEGATIVE, st.sampled_from(["0", "1.5", "2", "1e9"])),
}


def numeric_flags() -> set[tuple[str, str]]:
    """(command, flag) of every option whose value is a number, found in the parsers."""
    found = set()

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, p in action.choices.items():
                    walk(f"{name} {sub}".strip(), p)
            elif action.option_strings and action.type in (int, float):
                found.add((name, action.option_strings[-1]))

    walk("", make_parser())
    return found


def test_every_numeric_flag_has_a_kind():
    assert numeric_flags() - set(KINDS) == set()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    np.savez(root / "d.npz", x=np.zeros((12, 16, 16), np.uint8), y=np.arange(12) % 3)
    (root / "study.yaml").write_text(
        "name: p\nspace: mobilenet_v3_like\nobjectives: {flops: minimize}\n"
        "evaluator: {kind: proxy, proxy: flops}\ntrials: 1\n")
    return root


def base_command(command: str, root: Path) -> list[str]:
    """A command that runs briefly with good values; the flag under test is appended (the
    last occurrence of an option wins)."""
    return {
        "show": ["show", TINY],
        "export": ["export", TINY, "--onnx", str(root / "x.onnx")],
        "prune": ["prune", TINY, "--target", "flops=0.9x", "--out", str(root / "prune"),
                  "--quiet", "--evaluator", "proxy:naswot,batch=4"],
        "train": ["train", TINY, "--data", str(root / "d.npz"), "--quiet", "--epochs", "1",
                  "--device", "cpu", "-o", str(root / "m.pt")],
        "cost": ["cost", TINY, "--round-seconds", "0.05"],
        "lut build": ["lut", "build", TINY, "--out", str(root / "lut.json")],
        "search": ["search", str(root / "study.yaml"), "--out", str(root / "search"),
                   "--no-progress"],
        "supernet train": ["supernet", "train", "mobilenet_v3_like", "--data",
                           str(root / "d.npz"), "--quiet", "--epochs", "1", "--device", "cpu",
                           "-o", str(root / "sn.pt")],
        "supernet extract": ["supernet", "extract", str(root / "sn.pt"), TINY, "-o",
                             str(root / "sub.pt")],
    }[command]


class Hang(Exception):
    pass


def run_bounded(argv: list[str]) -> int:
    def stop(*_):
        raise Hang(f"{' '.join(argv)} ran past {BOUND_S} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(BOUND_S)
    try:
        return main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("command, flag", sorted(KINDS))
def test_malformed_numbers_are_one_line_errors(command, flag, files, capsys):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=MALFORMED[KINDS[(command, flag)]])
    def check(value):
        capsys.readouterr()
        try:
            code = run_bounded(base_command(command, files) + [f"{flag}={value}"])
        except SystemExit as exc:  # argparse: a value its type cannot read
            code = exc.code
        err = capsys.readouterr().err.strip()
        lines = err.splitlines()
        assert code == 2, f"{flag}={value!r}: exit {code}, stderr {err[-300:]!r}"
        name = flag.lstrip("-")
        assert any(n in err for n in (flag, name, name.replace("-", "_"))), \
            f"{flag}={value!r}: the error does not name the flag: {err!r}"
        assert "Traceback" not in err
        if not err.startswith("usage:"):  # argparse's own message is usage + one line
            assert len(lines) == 1, f"{flag}={value!r}: {len(lines)} lines: {err!r}"

    check()
