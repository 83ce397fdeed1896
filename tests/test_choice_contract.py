"""The contract every search choice keeps (``nasscale.search.choices``).

A choice is a frozen declaration (widths, a layer, an attention tail, a stage slot, the head)
that ``sample``s a value from anything with Optuna's ``suggest_categorical``/``suggest_int`` and
whose value ``params_for`` (the choice's own, or ``SearchSpace.params_for`` for slots and the
head) inverts.  ``ChoiceContract`` holds the generic tests; each choice class has one subclass
with a ``make_choice()`` hook and small adapters (how to sample it, how to invert a value, the
options it declares, its YAML form), and a completeness test fails, naming the class, when a
choice class of the module has no contract subclass here.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.samplers import RandomSampler
from optuna.trial import FixedTrial

import nasscale
from nasscale.errors import SpecError
from nasscale.search import choices as choices_mod
from nasscale.search.choices import (
    AttentionTail,
    HeadChoice,
    LayerChoice,
    MQATail,
    NotInSpace,
    StageChoice,
    WidthChoice,
)
from nasscale.search.space import SearchSpace, _Extreme
from nasscale.search.space_io import space_from_data
from nasscale.specs import ConvSpec, HeadSpec, NetworkSpec, StageSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: random samples per generic test: enough to meet every option of the declarations below
SEEDS = range(48)


class Recorder:
    """A suggester that passes each question to ``inner`` and records the options offered and
    the answer.  A parameter asked again in one sample (a shared choice of a slot whose layers
    are sampled one by one) must offer the same options and get the same answer."""

    def __init__(self, inner):
        self.inner = inner
        self.params: dict = {}
        self.options: dict = {}

    def _record(self, name, options, value):
        if name in self.params:
            assert options == self.options[name] and value == self.params[name], (
                f"parameter {name!r} asked twice in one sample with other options or answers")
        self.options[name], self.params[name] = options, value
        return value

    def suggest_categorical(self, name, choices):
        choices = list(choices)
        return self._record(name, choices, self.inner.suggest_categorical(name, choices))

    def suggest_int(self, name, low, high, step=1):
        return self._record(name, list(range(low, high + 1, step)),
                            self.inner.suggest_int(name, low, high, step=step))


class Refuse:
    """A suggester that fails the test when asked anything."""

    def suggest_categorical(self, name, choices):
        raise AssertionError(f"asked {name!r} of {list(choices)}")

    def suggest_int(self, name, low, high, step=1):
        raise AssertionError(f"asked {name!r} in {low}..{high}")


def optuna_options(dist) -> list:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    assert isinstance(dist, IntDistribution), dist
    return list(range(dist.low, dist.high + 1, dist.step))


def where_text(err: SpecError) -> str:
    return " ".join(err.where)


# --- a tiny space around a stage slot or a head ----------------------------------------------

FIXED_SLOT = StageChoice(stride=2, depth=(1,), width=WidthChoice(16, 16),
                         layer=LayerChoice(kinds=("mbconv",)))


def tiny_space(stage: StageChoice = FIXED_SLOT, head: HeadChoice = HeadChoice()) -> SearchSpace:
    return SearchSpace(name="contract", resolution=(32,), stem_width=WidthChoice(16, 16),
                       stem_activation=("relu",), stages=(stage,), head=head, num_classes=10)


BASE_YAML = {"name": "contract", "resolution": [32], "num_classes": 10,
             "stem": {"width": 16, "activation": ["relu"]},
             "stages": [{"stride": 2, "depth": [1], "width": 16, "kinds": ["mbconv"]}]}


def with_stage(**stage) -> dict:
    data = copy.deepcopy(BASE_YAML)
    data["stages"][0] = {**data["stages"][0], **stage}
    return data


def network_params(net: NetworkSpec) -> int:
    return nasscale.count(net).params


def block_network(block, in_channels: int = 16) -> NetworkSpec:
    """A network made of a stem of ``in_channels`` and ``block`` (none: the stem alone)."""
    stages = (StageSpec(block),) if block is not None else (StageSpec(ConvSpec(
        out_channels=in_channels, kernel_size=1)),)
    return NetworkSpec(name="c", stem=(ConvSpec(out_channels=in_channels, kernel_size=3,
                                                stride=2),),
                       stages=stages, head=HeadSpec(), resolution=32, num_classes=10)


def pytest_generate_tests(metafunc):
    """``bad``/``bad_yaml``: each contract subclass's own list of bad declarations."""
    for name, attr in (("bad", "BAD"), ("bad_yaml", "BAD_YAML")):
        if name in metafunc.fixturenames:
            cases = getattr(metafunc.cls, attr, ())
            if not cases:
                metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(
                    reason=f"no {attr} cases"))])
                continue
            metafunc.parametrize(name, cases, ids=[
                (c.values[0] if hasattr(c, "values") else c)[1] + f"-{i}"
                for i, c in enumerate(cases)])


# --- the contract ---------------------------------------------------------------------------

class ChoiceContract:
    """Generic tests of one choice class.  A subclass sets ``choice_class`` and implements
    ``make_choice()`` (every field with at least two options where it has options),
    ``make_single()`` (one option everywhere), ``declared(choice)`` (each parameter's options,
    written out by hand), ``sample``, ``params_for``, ``outside(choice)`` (a value not in it),
    ``size(choice, value)`` (parameters), ``yaml()``/``locate(space)`` (its YAML form), and
    lists ``BAD``: ``(changes, field)`` (``dataclasses.replace`` with ``changes`` raises a
    SpecError naming ``field``) and ``BAD_YAML``: ``(changes to yaml(), field)``."""

    choice_class: type = object
    BAD: list = []
    BAD_YAML: list = []

    def make_choice(self):
        raise NotImplementedError

    def make_single(self):
        raise NotImplementedError

    def declared(self, choice) -> dict:
        raise NotImplementedError

    def sample(self, choice, suggester):
        raise NotImplementedError

    def params_for(self, choice, value) -> dict:
        raise NotImplementedError

    def outside(self, choice):
        raise NotImplementedError

    def size(self, choice, value) -> int:
        raise NotImplementedError

    def yaml(self) -> dict:
        """The choice's YAML fragment."""
        raise NotImplementedError

    def yaml_space(self, fragment: dict) -> dict:
        """A space's YAML holding ``fragment``."""
        raise NotImplementedError

    def locate(self, space: SearchSpace):
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------------------
    def optuna_sample(self, choice, seed: int):
        study = optuna.create_study(sampler=RandomSampler(seed=seed))
        trial = study.ask()
        rec = Recorder(trial)
        value = self.sample(choice, rec)
        assert trial.params == rec.params
        assert {k: optuna_options(d) for k, d in trial.distributions.items()} == rec.options
        return value, rec

    # --- the declaration -------------------------------------------------------------------
    def test_is_a_frozen_hashable_value(self):
        choice = self.make_choice()
        assert type(choice) is self.choice_class
        assert dataclasses.is_dataclass(choice)
        assert choice == dataclasses.replace(choice) and hash(choice) == hash(
            dataclasses.replace(choice))
        field = dataclasses.fields(choice)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(choice, field, getattr(choice, field))

    def test_bad_declarations_raise_a_spec_error_naming_the_field(self, bad):
        changes, field = bad
        with pytest.raises(SpecError) as err:
            dataclasses.replace(self.make_choice(), **changes)
        assert field in where_text(err.value), (str(err.value), field)
        assert "\n" not in str(err.value)

    def test_its_yaml_declaration_makes_the_same_choice(self):
        space = space_from_data(self.yaml_space(self.yaml()))
        assert self.locate(space) == self.make_choice()
        # YAML through JSON (lists, no tuples) too
        data = json.loads(json.dumps(self.yaml_space(self.yaml())))
        assert self.locate(space_from_data(data)) == self.make_choice()

    def test_a_bad_yaml_declaration_names_the_field(self, bad_yaml):
        changes, field = bad_yaml
        with pytest.raises(SpecError) as err:
            space_from_data(self.yaml_space({**self.yaml(), **changes}))
        assert field in str(err.value), (str(err.value), field)
        assert "\n" not in str(err.value)

    # --- sampling --------------------------------------------------------------------------
    def test_sampling_asks_exactly_the_declared_options(self):
        """Every parameter asked offers exactly its declared options, in the declared order;
        over many seeds every declared parameter is asked and every option is answered."""
        choice = self.make_choice()
        declared = self.declared(choice)
        seen: dict = {name: [] for name in declared}
        for seed in SEEDS:
            _, rec = self.optuna_sample(choice, seed)
            for name, options in rec.options.items():
                assert name in declared, f"undeclared parameter {name!r}"
                assert options == declared[name], name
                assert rec.params[name] in declared[name]
                seen[name].append(rec.params[name])
        for name, options in declared.items():
            missing = [o for o in options if o not in seen[name]]
            assert not missing, f"{name}: options {missing} never sampled in {len(SEEDS)} seeds"

    def test_a_sample_is_the_point_its_parameters_name(self):
        """``params_for`` of a sampled value gives back exactly the parameters asked, and
        replaying them (``FixedTrial``) samples the same value."""
        choice = self.make_choice()
        for seed in SEEDS[:16]:
            value, rec = self.optuna_sample(choice, seed)
            assert self.params_for(choice, value) == rec.params
            assert self.sample(choice, FixedTrial(rec.params)) == value

    def test_the_same_seed_samples_the_same_value(self):
        choice = self.make_choice()
        for seed in (0, 7):
            (a, ra), (b, rb) = self.optuna_sample(choice, seed), self.optuna_sample(choice, seed)
            assert a == b and ra.params == rb.params
        values = {repr(self.optuna_sample(choice, seed)[0]) for seed in SEEDS[:16]}
        assert len(values) > 1  # the choice does vary

    def test_one_option_everywhere_asks_nothing(self):
        choice = self.make_single()
        value = self.sample(choice, Refuse())
        assert self.params_for(choice, value) == {}

    def test_a_value_outside_is_not_in_space_with_a_reason(self):
        choice = self.make_choice()
        with pytest.raises(NotInSpace) as err:
            self.params_for(choice, self.outside(choice))
        assert str(err.value).strip() and "\n" not in str(err.value)

    def test_the_largest_answers_are_the_largest_value(self):
        """``SearchSpace.largest``'s answers (the highest number, True, the first name, the
        widest head) give a value with at least the parameters of every sample that made the
        same named (string) choices, and a point of the choice."""
        choice = self.make_choice()
        rec = Recorder(_Extreme())
        largest = self.sample(choice, rec)
        assert self.params_for(choice, largest) == rec.params
        names = {k: v for k, v in rec.params.items() if isinstance(v, str)}
        top = self.size(choice, largest)
        compared = 0
        for seed in SEEDS:
            value, r = self.optuna_sample(choice, seed)
            if all(r.params.get(k) == v for k, v in names.items()):
                compared += 1
                assert self.size(choice, value) <= top, (seed, r.params, rec.params)
        assert compared


# --- one subclass per choice class ------------------------------------------------------------

class TestWidthChoiceContract(ChoiceContract):
    choice_class = WidthChoice
    BAD = [({"min": 12}, "width.min"), ({"step": 4}, "width.step"),
           ({"min": True}, "width.min"), ({"max": 8}, "width"),
           ({"max": 40, "step": 16}, "width")]
    BAD_YAML = [({"max": 8}, "stem.width"),
                pytest.param(({"min": 12}, "min"), marks=pytest.mark.xfail(strict=True, reason=(
                    "space_io._width re-raises SpecError(err.message, (where,)), dropping the "
                    "field WidthChoice named (width.min): the error says 'stem.width: must be "
                    "a multiple of 8 ..., got 12'"))),
                ]

    def make_choice(self):
        return WidthChoice(16, 48, 8)

    def make_single(self):
        return WidthChoice(24, 24)

    def declared(self, choice):
        return {"w": [16, 24, 32, 40, 48]}

    def sample(self, choice, suggester):
        return choice.sample(suggester, "w")

    def params_for(self, choice, value):
        values = list(choice.values())
        if value not in values:
            raise NotInSpace(f"w: {value!r} not among {values}")
        return {"w": value} if len(values) > 1 else {}

    def outside(self, choice):
        return 20

    def size(self, choice, value):
        return value

    def yaml(self):
        return {"min": 16, "max": 48, "step": 8}

    def yaml_space(self, fragment):
        return {**BASE_YAML, "stem": {"width": fragment}}

    def locate(self, space):
        return space.stem_width

    def test_values_are_the_grid_from_min_to_max(self):
        assert list(WidthChoice(16, 48, 16).values()) == [16, 32, 48]
        assert list(WidthChoice(8, 8).values()) == [8]


class TestLayerChoiceContract(ChoiceContract):
    choice_class = LayerChoice
    BAD = [({"kinds": ()}, "kinds"), ({"kinds": ("nope",)}, "kinds"),
           ({"kernel_size": (4,)}, "kernel_size"), ({"kernel_size": (3, 3)}, "kernel_size"),
           ({"kernel_size": (0,)}, "kernel_size"),  # 0 only when every kind is uib
           ({"expand_ratio": (0.0,)}, "expand_ratio"), ({"se": (1,)}, "se"),
           ({"activation": ("swish",)}, "activation"), ({"start_kernel": (2,)}, "start_kernel"),
           ({"kinds": ("bneck",), "activation": ("silu",)}, "activation")]
    BAD_YAML = [({"kernel_size": [4]}, "kernel_size"), ({"kinds": ["nope"]}, "kinds"),
                ({"se": ["yes"]}, "se")]

    def make_choice(self):
        return LayerChoice(kinds=("mbconv", "fused", "uib"), kernel_size=(3, 5),
                           expand_ratio=(3.0, 6.0), se=(False, True),
                           activation=("relu", "hswish"), start_kernel=(0, 3))

    def make_single(self):
        return LayerChoice(kinds=("mbconv",))

    def declared(self, choice):
        return {"s0.kind": ["mbconv", "fused", "uib"], "s0.kernel_size": [3, 5],
                "s0.activation": ["relu", "hswish"], "s0.expand_ratio": [3.0, 6.0],
                "s0.se": [False, True], "s0.start_kernel": [0, 3]}

    @staticmethod
    def name(field):
        return f"s0.{field}"

    def sample(self, choice, suggester):
        return choice.sample(suggester, self.name, 16, 24, 2)

    def params_for(self, choice, value):
        return choice.params_for(value, self.name, 16)

    def outside(self, choice):
        return LayerChoice(kinds=("mbconv",), kernel_size=(7,)).sample(Refuse(), self.name,
                                                                         16, 24, 2)

    def size(self, choice, value):
        return network_params(block_network(value))

    def yaml(self):
        return {"stride": 2, "depth": [1], "width": 24, "kinds": ["mbconv", "fused", "uib"],
                "kernel_size": [3, 5], "expand_ratio": [3, 6], "se": [False, True],
                "activation": ["relu", "hswish"], "start_kernel": [0, 3]}

    def yaml_space(self, fragment):
        return with_stage(**fragment)

    def locate(self, space):
        return space.stages[0].layer

    def test_a_kind_without_a_field_does_not_ask_it(self):
        choice = self.make_choice()
        for seed in SEEDS[:24]:
            value, rec = self.optuna_sample(choice, seed)
            assert ("s0.se" in rec.params) == (value.kind in ("mbconv", "fused"))
            assert ("s0.start_kernel" in rec.params) == (value.kind == "uib")


class TestAttentionTailContract(ChoiceContract):
    choice_class = AttentionTail
    BAD = [({"kind": "mqa"}, "attention.kind"), ({"num_heads": (3,)}, "attention.num_heads"),
           ({"kind": "mobilevit2"}, "attention.num_heads"),
           ({"transformer_depth": (0,)}, "attention.transformer_depth"),
           ({"present": ()}, "attention.present"), ({"present": (1,)}, "attention.present"),
           ({"activation": "swish"}, "attention.activation"),
           ({"mlp_ratio": ("2",)}, "attention.mlp_ratio"),
           pytest.param(({"mlp_ratio": (-1.0,)}, "attention.mlp_ratio"),
                        marks=pytest.mark.xfail(strict=True, reason=(
                            "AttentionTail checks only the type of mlp_ratio (choices.py:216), "
                            "unlike expand_ratio: a ratio <= 0 is accepted and silently gives an "
                            "MLP width of 8 (make_divisible's floor)")))]
    BAD_YAML = [({"num_heads": [3]}, "num_heads"), ({"kind": "transformer"}, "kind"),
                ({"patch_size": [0]}, "patch_size")]

    def make_choice(self):
        return AttentionTail(transformer_dim=WidthChoice(32, 48, 16), present=(False, True),
                             transformer_depth=(1, 2), mlp_ratio=(2.0, 4.0), num_heads=(2, 4),
                             patch_size=(1, 2), kernel_size=(3,))

    def make_single(self):
        return AttentionTail(transformer_dim=WidthChoice(32, 32))

    def declared(self, choice):
        return {"s0.attn": [False, True], "s0.attn.dim": [32, 48],
                "s0.attn.mlp_ratio": [2.0, 4.0], "s0.attn.depth": [1, 2],
                "s0.attn.heads": [2, 4], "s0.attn.patch": [1, 2]}

    def sample(self, choice, suggester):
        return choice.sample(suggester, 0, 32)

    def params_for(self, choice, value):
        return choice.params_for(value, 0)

    def outside(self, choice):
        return dataclasses.replace(choice, present=(True,), activation="relu").sample(
            _Extreme(), 0, 32)

    def size(self, choice, value):
        return network_params(block_network(value, 32))

    def yaml(self):
        return {"transformer_dim": {"min": 32, "max": 48, "step": 16}, "present": [False, True],
                "transformer_depth": [1, 2], "mlp_ratio": [2, 4], "num_heads": [2, 4],
                "patch_size": [1, 2], "kernel_size": [3]}

    def yaml_space(self, fragment):
        return with_stage(width=32, attention=fragment)

    def locate(self, space):
        return space.stages[0].attention


class TestMQATailContract(ChoiceContract):
    choice_class = MQATail
    BAD = [({"present": (2,)}, "attention.present"),
           ({"num_heads": (0,)}, "attention.num_heads"),
           ({"kv_stride": (3,)}, "attention.kv_stride"),
           ({"key_dim": (16, 16)}, "attention.key_dim"),
           ({"kernel_size": ()}, "attention.kernel_size")]
    BAD_YAML = [({"kv_stride": [3]}, "kv_stride"), ({"key_dim": [0]}, "key_dim")]

    def make_choice(self):
        return MQATail(present=(False, True), num_heads=(2, 4), key_dim=(16, 32),
                       kv_stride=(1, 2), kernel_size=(3, 5))

    def make_single(self):
        return MQATail(present=(True,))

    def declared(self, choice):
        return {"s0.attn": [False, True], "s0.attn.heads": [2, 4], "s0.attn.key_dim": [16, 32],
                "s0.attn.kv_stride": [1, 2], "s0.attn.kernel_size": [3, 5]}

    def sample(self, choice, suggester):
        return choice.sample(suggester, 0, 32)

    def params_for(self, choice, value):
        return choice.params_for(value, 0)

    def outside(self, choice):
        return dataclasses.replace(choice, present=(True,), layer_scale=1e-5).sample(
            _Extreme(), 0, 32)

    def size(self, choice, value):
        return network_params(block_network(value, 32))

    def yaml(self):
        return {"kind": "mqa", "present": [False, True], "num_heads": [2, 4],
                "key_dim": [16, 32], "kv_stride": [1, 2], "kernel_size": [3, 5]}

    def yaml_space(self, fragment):
        return with_stage(width=32, attention=fragment)

    def locate(self, space):
        return space.stages[0].attention


class TestStageChoiceContract(ChoiceContract):
    """A stage slot, sampled and inverted by a one-slot ``SearchSpace``."""

    choice_class = StageChoice
    BAD = [({"stride": 3}, "stride"), ({"depth": ()}, "depth"), ({"depth": (-1,)}, "depth"),
           ({"depth": (1, 1)}, "depth"), ({"per_layer": ("nope",)}, "per_layer")]
    BAD_YAML = [({"stride": 3}, "stride"), ({"per_layer": ["nope"]}, "per_layer"),
                ({"depth": [-1]}, "depth"), ({"width": {"min": 12, "max": 16}}, "width")]

    def make_choice(self):
        return StageChoice(stride=2, depth=(1, 2), width=WidthChoice(16, 24),
                           layer=LayerChoice(kinds=("mbconv", "ds"), kernel_size=(3, 5),
                                             expand_ratio=(3.0, 6.0)),
                           per_layer=("kernel_size",))

    def make_single(self):
        return StageChoice(stride=2, depth=(1,), width=WidthChoice(16, 16),
                           layer=LayerChoice(kinds=("mbconv",)))

    def declared(self, choice):
        return {"s0.depth": [1, 2], "s0.width": [16, 24], "s0.kind": ["mbconv", "ds"],
                "s0.l0.kernel_size": [3, 5], "s0.l1.kernel_size": [3, 5],
                "s0.expand_ratio": [3.0, 6.0]}

    def sample(self, choice, suggester):
        return tiny_space(stage=choice).sample(suggester)

    def params_for(self, choice, value):
        return tiny_space(stage=choice).params_for(value)

    def outside(self, choice):
        other = dataclasses.replace(choice, layer=LayerChoice(kinds=("mbconv",),
                                                              kernel_size=(7,)))
        return tiny_space(stage=other).sample(_Extreme())

    def size(self, choice, value):
        return network_params(value)

    def yaml(self):
        return {"stride": 2, "depth": [1, 2], "width": {"min": 16, "max": 24},
                "kinds": ["mbconv", "ds"], "kernel_size": [3, 5], "expand_ratio": [3, 6],
                "per_layer": ["kernel_size"]}

    def yaml_space(self, fragment):
        data = copy.deepcopy(BASE_YAML)
        data["stages"] = [fragment]
        return data

    def locate(self, space):
        return space.stages[0]

    def test_names_are_per_layer_only_for_per_layer_fields(self):
        choice = self.make_choice()
        assert choice.layerwise
        assert choice.name(1, 2, "kernel_size") == "s1.l2.kernel_size"
        assert choice.name(1, 2, "kind") == "s1.kind"


class TestHeadChoiceContract(ChoiceContract):
    """The head, sampled and inverted by a one-slot ``SearchSpace``."""

    choice_class = HeadChoice
    BAD = [({"hidden_norm": "ln"}, "head.hidden_norm"),
           ({"conv_width": (64,)}, "head"),  # with conv_ratio: not both
           ({"conv_ratio": (), "conv_width": (12,)}, "head.conv_width"),
           ({"hidden": ()}, "head.hidden"), ({"hidden": ((64,), (64,))}, "head.hidden"),
           ({"conv_activation": "swish"}, "head"), ({"hidden_activation": "swish"}, "head"),
           pytest.param(({"conv_ratio": (), "conv_width": (64, 64)}, "head.conv_width"),
                        marks=pytest.mark.xfail(strict=True, reason=(
                            "HeadChoice does not pass conv_width through _choices "
                            "(choices.py:372): a width listed twice is accepted, unlike every "
                            "other choice list"))),
           pytest.param(({"conv_ratio": (), "conv_width": (0,)}, "head.conv_width"),
                        marks=pytest.mark.xfail(strict=True, reason=(
                            "HeadChoice accepts conv_width 0 (0 % 8 == 0, choices.py:372); "
                            "sampling then fails with 'out_channels: must be an integer >= 1'"))),
           pytest.param(({"conv_ratio": (-1.0,)}, "head.conv_ratio"),
                        marks=pytest.mark.xfail(strict=True, reason=(
                            "HeadChoice never checks conv_ratio (choices.py:366-377): a ratio "
                            "<= 0 (or a duplicate, or a string) is accepted, and a negative one "
                            "silently gives an 8-wide conv")))]
    BAD_YAML = [({"hidden": [64]}, "hidden"),
                pytest.param(({"hidden_norm": "ln"}, "hidden_norm"),
                             marks=pytest.mark.xfail(strict=True, reason=(
                                 "space_io._head re-raises SpecError(err.message, (where,)) "
                                 "(space_io.py:154), dropping the field HeadChoice named: the "
                                 "error reads 'head: must be none or bn, got ...'"))),
                pytest.param(({"conv_ratio": [], "conv_width": [12]}, "conv_width"),
                             marks=pytest.mark.xfail(strict=True, reason=(
                                 "space_io._head drops the field (space_io.py:154): 'head: must "
                                 "be multiples of 8, got 12'")))]

    def make_choice(self):
        return HeadChoice(conv_ratio=(4.0, 6.0), hidden=((), (64,), (128,)))

    def make_single(self):
        return HeadChoice(conv_width=(64,), hidden=((32,),))

    def declared(self, choice):
        return {"head.conv_ratio": [4.0, 6.0], "head.hidden": ["none", "64", "128"]}

    def sample(self, choice, suggester):
        return tiny_space(head=choice).sample(suggester)

    def params_for(self, choice, value):
        return tiny_space(head=choice).params_for(value)

    def outside(self, choice):
        net = tiny_space(head=choice).sample(_Extreme())
        return net.replace(head=dataclasses.replace(net.head, hidden=(256,)))

    def size(self, choice, value):
        return network_params(value)

    def yaml(self):
        return {"conv_ratio": [4, 6], "hidden": [[], [64], [128]]}

    def yaml_space(self, fragment):
        return {**BASE_YAML, "head": fragment}

    def locate(self, space):
        return space.head

    def test_conv_widths_follow_the_last_stage(self):
        assert self.make_choice().conv_widths(16) == (64, 96)
        assert HeadChoice(conv_width=(64, 128)).conv_widths(16) == (64, 128)
        assert HeadChoice().conv_widths(16) == ()


# --- completeness -----------------------------------------------------------------------------

def choice_classes(module=choices_mod) -> set[type]:
    """The choice declarations of the module: the dataclasses it defines."""
    return {cls for cls in vars(module).values()
            if isinstance(cls, type) and cls.__module__ == module.__name__
            and dataclasses.is_dataclass(cls)}


def covered_choices() -> set[type]:
    covered: set[type] = set()
    todo = list(ChoiceContract.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        covered.add(cls.choice_class)
    return covered


def check_every_choice_has_a_contract(module=choices_mod) -> None:
    missing = sorted(cls.__name__ for cls in choice_classes(module) - covered_choices())
    assert not missing, (
        f"choice class(es) of {module.__name__} without a contract subclass in {__name__}: "
        f"{', '.join(missing)} (add a ChoiceContract subclass with choice_class and "
        "make_choice)")


def test_every_choice_class_has_a_contract_subclass():
    assert {WidthChoice, LayerChoice, AttentionTail, MQATail, StageChoice,
            HeadChoice} <= choice_classes()
    check_every_choice_has_a_contract()


def test_the_completeness_check_names_a_choice_without_a_contract(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class DropoutChoice:
        rates: tuple = (0.1, 0.2)

    DropoutChoice.__module__ = choices_mod.__name__
    monkeypatch.setattr(choices_mod, "DropoutChoice", DropoutChoice, raising=False)
    with pytest.raises(AssertionError, match="DropoutChoice"):
        check_every_choice_has_a_contract()
    monkeypatch.undo()
    del DropoutChoice
    gc.collect()
    check_every_choice_has_a_contract()
