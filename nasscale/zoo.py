"""Named architectures: the family files under ``spaces/archs/``.

A family file holds what its networks share (``family``, ``paper``, ``reference``, ``weights``,
``rounding``, ``norm``)
and a ``networks`` mapping of name → network (the schema of ``nasscale.grammar.yaml_io``, without
``name``).  A network's own keys override the family's.  An optional ``variants`` mapping lists
published scaled networks as a base network plus coefficients (``nasscale.scaling.variants``);
they are named architectures like the others.

``weights`` (``nasscale.weights.layouts``) names, per source, the layout of the reference's
tensor names.  A network's own replaces the family's, a variant takes its base network's unless
it gives its own, and the family-level one is also what a network of the family that states
none takes (``family_weights``): a search-space member, whose ``family`` is its space's.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from nasscale.errors import NasscaleError, SpecError, UnknownNameError, suggest
from nasscale.grammar.yaml_io import (
    check_keys,
    in_file,
    network_from_data,
    read_yaml,
    weights_from_data,
)
from nasscale.scaling.variants import variant_from_data
from nasscale.specs import NetworkSpec, WeightsLayout, resolve

FAMILY_KEYS = ("family", "paper", "reference", "weights", "rounding", "norm", "networks",
               "variants")
INHERITED = ("family", "paper", "reference", "weights", "rounding", "norm")
#: what a variant takes from its base network, not from the family file, unless it gives it
FROM_BASE = ("weights", "rounding", "norm")


def spaces_dir() -> Path:
    """``$NASSCALE_SPACES``, else the ``spaces/`` folder of the source tree or installed package."""
    env = os.environ.get("NASSCALE_SPACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "spaces", here / "_spaces"):
        if (candidate / "archs").is_dir():
            return candidate
    raise NasscaleError(f"cannot find the spaces/ folder (looked beside {here}); "
                        "set NASSCALE_SPACES to it")


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    path: Path
    data: Mapping[str, Any]  # the merged network mapping
    text: str  # the file's text, for line numbers in errors
    section: str = "networks"  # or "variants": a base network scaled by coefficients


def _entries(root: str) -> dict[str, Entry]:
    return _catalog(root)[0]


def _families(root: str) -> dict[str, tuple[WeightsLayout, ...]]:
    """Each family file's ``family`` → its family-level ``weights`` (``()`` where it has none)."""
    return _catalog(root)[1]


@functools.cache
def _catalog(root: str) -> tuple[dict[str, Entry], dict[str, tuple[WeightsLayout, ...]]]:
    """Every network and variant of the family files, and each family's ``weights``."""
    entries: dict[str, Entry] = {}
    families: dict[str, tuple[WeightsLayout, ...]] = {}
    for path in sorted(Path(root, "archs").glob("*.yaml")):
        data, text = read_yaml(path)
        try:
            data = check_keys(data, FAMILY_KEYS, "", required=("family", "networks"))
            networks = data["networks"]
            if not isinstance(networks, Mapping) or not networks:
                raise SpecError("must be a non-empty mapping of name -> network", ("networks",))
            families[str(data["family"])] = weights_from_data(data.get("weights"), "weights")
        except SpecError as err:
            raise in_file(err, path, text) from None
        shared = {k: data[k] for k in INHERITED if k in data}
        variants = data.get("variants") or {}
        if not isinstance(variants, Mapping):
            raise in_file(SpecError("must be a mapping of name -> variant", ("variants",)), path,
                          text)
        # a variant's weights, rounding and norm are its base network's unless it gives them
        inherited = {"networks": shared,
                     "variants": {k: v for k, v in shared.items() if k not in FROM_BASE}}
        for section, members in (("networks", networks), ("variants", variants)):
            for name, body in members.items():
                if name in entries:
                    raise NasscaleError(f"{path}: network {name!r} is also defined in "
                                        f"{entries[name].path}")
                if not isinstance(body, Mapping):
                    raise in_file(SpecError("must be a mapping", (f"{section}.{name}",)), path,
                                  text)
                entries[name] = Entry(name, data["family"], path,
                                      {**inherited[section], **body, "name": name}, text, section)
    return entries, families


def entries() -> dict[str, Entry]:
    return _entries(str(spaces_dir()))


def family_weights(family: str) -> tuple[WeightsLayout, ...]:
    """The family-level ``weights`` of the family file whose ``family`` is ``family``: the
    layouts a network of that family takes when it states none (``()``: no such file, or a
    file without family-level ``weights``)."""
    return _families(str(spaces_dir())).get(family, ())


def names() -> list[str]:
    """Every named architecture, in file order."""
    return list(entries())


@functools.cache
def _load_named(root: str, name: str) -> NetworkSpec:
    entry = _entries(root)[name]
    base = _variant_base(root, entry) if entry.section == "variants" else None
    try:
        if base is not None:
            spec = variant_from_data(entry.data, base)
        else:
            spec = network_from_data(entry.data, "")
        resolve(spec)
        return spec
    except SpecError as err:
        where = (f"{entry.section}.{name}.{err.where[0]}",) + err.where[1:] if err.where else ()
        raise in_file(SpecError(err.message, where), entry.path, entry.text) from None


def _variant_base(root: str, entry: Entry) -> NetworkSpec:
    base = entry.data.get("base")
    networks = [n for n, e in _entries(root).items() if e.section == "networks"]
    if base not in networks:
        err = SpecError(f"must name a network under 'networks:' of a family file"
                        f"{suggest(str(base), networks)}, got {base!r}",
                        (f"variants.{entry.name}.base",))
        raise in_file(err, entry.path, entry.text)
    return _load_named(root, base)


def get(name: str) -> NetworkSpec:
    """The spec of a named architecture; unknown names list what is known."""
    known = entries()
    if name not in known:
        raise UnknownNameError(f"unknown architecture {name!r}{suggest(name, known)}; "
                               f"known: {', '.join(known)} (or give a path to a .yaml file)")
    return _load_named(str(spaces_dir()), name)


def load(name_or_path: str | os.PathLike | NetworkSpec) -> NetworkSpec:
    """A ``NetworkSpec`` from a spec (returned as is), a zoo name, or a network YAML file."""
    if isinstance(name_or_path, NetworkSpec):
        return name_or_path
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        from nasscale.grammar.yaml_io import load_network_file

        if not Path(text).exists():
            raise NasscaleError(f"{text}: no such file")
        data, _ = read_yaml(text)
        if isinstance(data, Mapping) and "networks" in data:
            listed = ", ".join(map(str, data["networks"] or ()))
            raise NasscaleError(f"{text}: is a family file; name one of its networks: {listed}")
        return load_network_file(text)
    return get(text)


def count(spec_or_name: "NetworkSpec | str", resolution: int | None = None):
    """Params and FLOPs (multiply-accumulates of conv, linear and attention matmuls, batch 1),
    computed from the resolved spec without building torch modules.  ``.params``, ``.flops``,
    ``.total`` (by op kind) and ``.blocks`` (per resolved block)."""
    from nasscale.costs.analytic import network_cost

    return network_cost(resolve(load(spec_or_name), resolution))


def reparameterize(network):
    """The deploy form of a network with re-parameterisable blocks (MobileOne, RepViT, FastViT).

    A spec, a zoo name or a YAML path gives a ``NetworkSpec`` with every such block fused
    (``NetworkSpec.deploy_form``); a built module (``nasscale.build``, trained or not) gives a
    new module of that spec whose output equals the given module's in eval mode (its
    BatchNorm running statistics folded in), the module itself unchanged.  A network without
    such blocks is its own deploy form.
    """
    if isinstance(network, (NetworkSpec, str, Path)):
        return load(network).deploy_form()
    from nasscale.modules.reparam import reparameterize_model

    return reparameterize_model(network)


def build(spec_or_name: "NetworkSpec | str", resolution: int | None = None):
    """The ``torch.nn.Module`` of a network; forward takes (N, 3, R, R) and gives (N, classes)."""
    from nasscale.modules import build_network

    return build_network(load(spec_or_name), resolution)

