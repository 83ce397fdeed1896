"""The evaluator contract: what every evaluator kind (``nasscale.scoring.kinds.EVALUATORS``)
and the evaluator it builds must do.  One subclass of ``EvaluatorContract`` per kind (and per
distinct evaluator a kind builds: a proxy and a cost); ``test_evaluator_kinds.py`` fails
naming a kind that has none."""
from __future__ import annotations

import math

import pytest

from nasscale.errors import SpecError
from nasscale.scoring.evaluator_spec import CONTEXTS, BuildContext, EvaluatorSpec
from nasscale.scoring.evaluators import Evaluator
from nasscale.scoring.kinds import EVALUATORS, evaluator_from_data, evaluator_from_text

from test_inherit import TINY_BNECK, make_files, one_thread, space_of  # noqa: F401

pytestmark = pytest.mark.usefixtures("support_on_path")


class EvaluatorContract:
    """Subclass with ``data`` (the study file's ``evaluator:`` mapping); ``prepare`` writes
    the files it names into ``tmp_path``."""

    data: dict = {}
    repeatable = True  # the same seed gives the same score

    def prepare(self, tmp_path) -> None:
        make_files(tmp_path)

    @pytest.fixture
    def setup(self, tmp_path):
        self.prepare(tmp_path)
        space = space_of(TINY_BNECK, tmp_path)
        spec = evaluator_from_data(self.data)
        ctx = BuildContext(seed=3, path=str(tmp_path / "study.yaml"), space=lambda: space)
        network = space.largest(name="candidate").replace(num_classes=4, resolution=16)
        return spec, ctx, network

    def test_it_is_the_registered_frozen_spec(self, setup):
        spec, _, _ = setup
        assert isinstance(spec, EvaluatorSpec) and type(spec) is EVALUATORS[spec.kind]
        with pytest.raises(AttributeError):
            spec.kind_of_thing = 1  # frozen

    def test_the_text_form_reads_back_the_same_spec(self, setup):
        spec, _, _ = setup
        for context in type(spec).contexts:
            text = spec.to_text()
            assert evaluator_from_text(text, context) == spec, text
            assert "\n" not in text

    def test_the_mapping_as_written_reads_back_the_same_spec(self, setup):
        spec, _, _ = setup
        assert spec.as_written() == self.data
        assert evaluator_from_data(spec.as_written()) == spec

    def test_an_unknown_key_is_one_line_naming_it_and_the_kind(self, setup):
        spec, _, _ = setup
        with pytest.raises(SpecError) as err:
            evaluator_from_data({**self.data, "bogus": 1})
        text = str(err.value)
        assert text.startswith("evaluator.bogus: unknown field") and spec.kind in text
        assert "\n" not in text

    def test_every_key_rejects_a_wrong_type_naming_the_key(self, setup):
        spec, _, _ = setup
        for f in spec.settings("study"):
            with pytest.raises(SpecError, match=f"evaluator.{f.name}: "):
                evaluator_from_data({**self.data, f.name: {"a": "mapping"}})

    def test_it_checks_and_builds_an_evaluator(self, setup):
        spec, ctx, _ = setup
        spec.check(ctx)
        ev = spec.build(ctx)
        assert isinstance(ev, Evaluator) and isinstance(ev.name, str) and ev.name
        assert ev.describe() and "\n" not in ev.describe()
        if spec.trains:
            assert ev.settings.resolution >= 8

    def test_a_score_is_finite_and_repeatable(self, setup):
        spec, ctx, network = setup
        first = spec.build(ctx).score(network, 11)
        assert isinstance(first, float) and math.isfinite(first)
        if self.repeatable:
            assert spec.build(ctx).score(network, 11) == pytest.approx(first, rel=1e-6)

    def test_flags_agree(self, setup):
        spec, _, _ = setup
        cls = type(spec)
        assert set(cls.contexts) <= set(CONTEXTS) and cls.contexts
        assert not cls.reports_epochs or cls.trains  # per-epoch values come from training
        for name in cls.required:
            assert name in {f.name for f in cls.settings()}

    def test_a_module_is_scored_in_the_prune_context(self, setup, tmp_path, monkeypatch):
        spec, _, network = setup
        monkeypatch.chdir(tmp_path)  # nasscale prune reads paths from the working folder
        if "prune" not in type(spec).contexts or spec.kind == "proxy" and \
                spec.proxy in ("flops", "params"):
            pytest.skip("not a score nasscale prune takes")
        from nasscale.pruning.evaluate import make_evaluator

        ev = make_evaluator(spec.to_text(), seed=0)
        score, model = ev.score(network)
        assert math.isfinite(score) and model is not None


class TestNaswotProxy(EvaluatorContract):
    data = {"kind": "proxy", "proxy": "naswot", "batch_size": 8, "resolution": 16,
            "data": "data.npz"}


class TestSynflowProxy(EvaluatorContract):
    data = {"kind": "proxy", "proxy": "synflow", "resolution": "0.5x"}


class TestCost(EvaluatorContract):
    data = {"kind": "proxy", "proxy": "flops"}


class TestTrain(EvaluatorContract):
    data = {"kind": "train", "data": "data.npz", "steps": 2, "batch_size": 8,
            "resolution": 16, "device": "cpu", "threads": 1}


class TestPython(EvaluatorContract):
    data = {"kind": "python", "target": "evalfns:width_score"}


class TestInherit(EvaluatorContract):
    data = {"kind": "inherit", "parent": "parent.yaml", "weights": "parent.pt",
            "data": "data.npz", "steps": 2, "batch_size": 8, "resolution": 16,
            "device": "cpu"}



class TestSupernet(EvaluatorContract):
    data = {"kind": "supernet", "weights": "supernet.pt", "calibration_batches": 2,
            "batch_size": 8, "threads": 1}

    def prepare(self, tmp_path) -> None:
        from test_supernet import make_supernet_file

        make_files(tmp_path)
        make_supernet_file(tmp_path)
