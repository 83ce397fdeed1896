"""Completeness of the evaluator registry: every kind in ``EVALUATORS`` is a frozen spec
with its keys declared once (value type, help), a text example that reads back, its own
``build``, a contract test class and a line in the guide.  A kind that lacks one of these
fails here with its name and what it lacks."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from nasscale.scoring.evaluator_spec import EvaluatorSpec
from nasscale.scoring.fields import Kind
from nasscale.scoring.kinds import EVALUATORS, evaluator_from_text

import test_evaluator_contract as contract

ROOT = Path(__file__).resolve().parents[1]


def lacks(name: str, cls: type) -> list[str]:
    """What the kind ``name`` lacks, one entry each (empty: complete)."""
    out = []
    if not (inspect.isclass(cls) and issubclass(cls, EvaluatorSpec)):
        return [f"{name}: is not an EvaluatorSpec subclass"]
    if cls.kind != name:
        out.append(f"{name}: its class attribute kind is {cls.kind!r}")
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__dataclass_fields__" not in cls.__dict__:
        out.append(f"{name}: is not declared as a frozen dataclass")
    doc = (cls.__doc__ or "").strip()
    if not doc or doc == EvaluatorSpec.__doc__ or doc.startswith(f"{cls.__name__}("):
        out.append(f"{name}: has no docstring")
    for f in dataclasses.fields(cls):
        if f.name == "written":
            continue
        if not isinstance(f.metadata.get("kind"), Kind) or not f.metadata.get("help"):
            out.append(f"{name}: key {f.name} is not declared with setting(default, kind, "
                       f"help)")
    if cls.positional and cls.positional not in {f.name for f in cls.settings()}:
        out.append(f"{name}: positional {cls.positional!r} is not one of its keys")
    if cls.build is EvaluatorSpec.build:
        out.append(f"{name}: has no build()")
    if not cls.example:
        out.append(f"{name}: has no example text")
    else:
        try:
            spec = evaluator_from_text(cls.example, cls.contexts[0])
            if evaluator_from_text(spec.to_text(), cls.contexts[0]) != spec:
                out.append(f"{name}: its example does not read back from to_text()")
        except Exception as err:  # noqa: BLE001 - reported, with the kind
            out.append(f"{name}: its example does not read: {err}")
    tested = {c.data.get("kind") for c in vars(contract).values()
              if inspect.isclass(c) and issubclass(c, contract.EvaluatorContract)
              and c is not contract.EvaluatorContract}
    if name not in tested:
        out.append(f"{name}: has no EvaluatorContract subclass in test_evaluator_contract.py")
    guide = (ROOT / "docs" / "guide" / "search.md")
    if guide.exists() and f"kind: {name}" not in guide.read_text():
        out.append(f"{name}: docs/guide/search.md does not show 'kind: {name}'")
    return out


def test_every_registered_kind_is_complete():
    problems = [p for name, cls in EVALUATORS.items() for p in lacks(name, cls)]
    assert not problems, "\n".join(problems)


def test_a_kind_missing_a_piece_is_named():
    """The check itself: a kind with no build, no docstring and an undeclared key."""

    @dataclasses.dataclass(frozen=True)
    class Toy(EvaluatorSpec):
        kind = "toy"
        size: int = 3

    problems = lacks("toy", Toy)
    text = "\n".join(problems)
    assert "toy: has no docstring" in text and "toy: has no build()" in text
    assert "toy: key size is not declared" in text and "toy: has no example" in text
    assert "toy: has no EvaluatorContract subclass" in text


def test_the_registry_is_one_dict_literal_of_spec_classes():
    assert all(inspect.isclass(c) and issubclass(c, EvaluatorSpec) for c in EVALUATORS.values())
    source = inspect.getsource(__import__("nasscale.scoring.kinds", fromlist=["x"]))
    assert source.count("EVALUATORS: dict[str, type[EvaluatorSpec]] = {") == 1


def test_names_declared_beside_their_torch_modules_agree():
    """Constants kept beside the specs so that reading a study does not import torch."""
    from nasscale.scoring.kinds import PROXY_NAMES
    from nasscale.scoring.proxies import PROXIES

    assert PROXY_NAMES == tuple(PROXIES)
