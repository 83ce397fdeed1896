"""Property-based: generated values (None, bools, huge and negative integers, NaN, infinities,
text, lists, nested mappings) in every key of a study file's sections and of a network file
either load or give ONE line naming the key — never a traceback.  The keys come from the
loaders' own registries (``STUDY_KEYS``, the evaluator kinds' specs, ...), so a new key is covered
without a new test."""
from __future__ import annotations

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

import nasscale  # noqa: E402
from nasscale.errors import NasscaleError  # noqa: E402
from nasscale.scoring.kinds import EVALUATORS  # noqa: E402
from nasscale.search import load_study  # noqa: E402
from nasscale.search.sections import PRUNERS, LatencySection, SamplerSection  # noqa: E402
from nasscale.search.study import STUDY_KEYS  # noqa: E402

EXAMPLES = 15
LEAF = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, -1, 1, 10 ** 30, float("nan"), float("inf"), -float("inf"), 1e308,
                     0.5, "", "abc", "1e20", "../../x", "/tmp/x", "☃", "nan"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12))
JUNK = st.recursive(LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)

BASE_STUDY = {
    "name": "p", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
    "evaluator": {"kind": "train", "data": "digits", "epochs": 3},
    "latency": {"source": "measure", "threads": 1, "batch": 1},
    "sampler": {"name": "tpe", "n_startup_trials": 2},
    "pruner": {"name": "successive_halving", "min_resource": 1},
    "trials": 2, "seed": 0,
}
FIELDS = ([(k,) for k in STUDY_KEYS]
          + [("evaluator", k) for k in EVALUATORS["train"].keys("study") if k != "kind"]
          + [("latency", k) for k in LatencySection.keys()]
          + [("sampler", k) for k in SamplerSection.keys() if k != "name"]
          + [("pruner", k) for k in PRUNERS["successive_halving"]])
NETWORK = yaml.safe_load(nasscale.dump_network(nasscale.load("mobilenet_v3_small")))
NETWORK_FIELDS = [(k,) for k in NETWORK] + [("stages", 0), ("stem", 0), ("head", "hidden")]


def _set(data: dict, path: tuple, value) -> dict:
    import copy

    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _dump(data) -> str:
    """YAML text of ``data``; NaN and infinities as YAML writes them (.nan, .inf)."""
    return yaml.safe_dump(data, allow_unicode=True)


def _one_line_naming(err: NasscaleError, path: tuple) -> None:
    text = str(err)
    assert "\n" not in text.strip(), text
    key = str(path[-1]) if not isinstance(path[-1], int) else str(path[-2])
    assert key in text or path[0] in text, f"{path}: {text}"


def test_the_base_files_load(tmp_path):
    (tmp_path / "study.yaml").write_text(_dump(BASE_STUDY))
    assert load_study(tmp_path / "study.yaml").trials == 2
    (tmp_path / "net.yaml").write_text(_dump(NETWORK))
    assert nasscale.count(nasscale.load(str(tmp_path / "net.yaml"))).params == 2_542_856


def _load_or_one_line(folder, base: dict, path: tuple, load) -> None:
    """Every generated value at ``path`` of ``base``, written as a file and given to
    ``load``: it loads, or fails with one line naming the key."""
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(value=JUNK)
    def check(value):
        file = folder / "file.yaml"
        try:
            file.write_text(_dump(_set(base, path, value)))
        except (yaml.YAMLError, ValueError):
            return  # not writable as YAML: nothing a user could give
        try:
            load(file)
        except NasscaleError as err:
            _one_line_naming(err, path)

    check()


@pytest.mark.parametrize("path", FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_study_keys_load_or_name_the_key(path, tmp_path_factory):
    _load_or_one_line(tmp_path_factory.mktemp("study"), BASE_STUDY, path, load_study)


@pytest.mark.parametrize("path", NETWORK_FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_network_keys_load_or_name_the_key(path, tmp_path_factory):
    def load(file):
        nasscale.count(nasscale.load(str(file)))  # resolving checks what loading leaves to it

    _load_or_one_line(tmp_path_factory.mktemp("net"), NETWORK, path, load)
