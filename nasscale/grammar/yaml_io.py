"""YAML ⇄ network specs, losslessly, with errors that name the file, line and field.

Blocks are written in their one-line text form (``nasscale.grammar.text``): a network file reads
like the paper's table.  On input a block may also be a mapping with the spec's full field names
(``{kind: mbconv, out_channels: 24, kernel_size: 3, ...}``).  YAML is always read with
``SafeLoader`` (``UniqueKeyLoader``: a repeated key and nesting past ``MAX_YAML_DEPTH`` are
errors).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.grammar.text import format_block, format_stage, parse_block, parse_stage
from nasscale.specs import (
    BLOCK_KINDS,
    WEIGHT_SOURCES,
    BlockSpec,
    Expected,
    HeadSpec,
    NetworkSpec,
    NormPolicy,
    RoundingPolicy,
    SESpec,
    StageSpec,
    WeightsLayout,
    resolve,
)

NETWORK_KEYS = ("name", "family", "paper", "reference", "weights", "resolution", "num_classes",
                "in_channels", "drop_path_rate", "rounding", "norm", "stem", "stages", "head",
                "expected")
HEAD_KEYS = ("blocks", "pool", "norm", "hidden", "hidden_activation", "hidden_norm",
             "dropout", "distill", "deploy")
ROUNDING_KEYS = tuple(f.name for f in dataclasses.fields(RoundingPolicy))
NORM_KEYS = tuple(f.name for f in dataclasses.fields(NormPolicy))
EXPECTED_KEYS = tuple(f.name for f in dataclasses.fields(Expected))
SE_KEYS = tuple(f.name for f in dataclasses.fields(SESpec))


def check_keys(data: object, allowed: tuple[str, ...], where: str,
               required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """``data`` must be a mapping whose keys are among ``allowed`` and include ``required``."""
    if not isinstance(data, Mapping):
        raise SpecError(f"must be a mapping with keys {', '.join(allowed)}; "
                        f"got {type(data).__name__}", (where,) if where else ())
    for key in data:
        if key not in allowed:
            raise SpecError(f"unknown field{suggest(str(key), allowed)}; "
                            f"allowed: {', '.join(allowed)}",
                            (f"{where}.{key}" if where else str(key),))
    for key in required:
        if key not in data:
            raise SpecError(f"missing field {key!r}", (where,) if where else ())
    return data


def _build(cls, where: str, **kwargs):
    try:
        return cls(**kwargs)
    except SpecError as err:
        raise err.with_context(where) if where else err from None
    except TypeError as err:  # a wrong type the dataclass itself rejects
        raise SpecError(str(err), (where,)) from None


# --- blocks ---------------------------------------------------------------------------------

def block_from_data(data: object, where: str) -> BlockSpec:
    """A block from its text form or from a mapping of full field names with ``kind``."""
    if isinstance(data, str):
        try:
            return parse_block(data)
        except SpecError as err:
            raise err.with_context(where) from None
    if not isinstance(data, Mapping) or "kind" not in data:
        raise SpecError("must be a block string (e.g. 'conv_k3_s2_c32_silu') or a mapping "
                        "with 'kind' and the block's fields", (where,))
    kind = data["kind"]
    if kind not in BLOCK_KINDS:
        raise SpecError(f"unknown block kind {kind!r}{suggest(str(kind), BLOCK_KINDS)}; "
                        f"known: {', '.join(BLOCK_KINDS)}", (f"{where}.kind",))
    cls = BLOCK_KINDS[kind]
    names = tuple(f.name for f in dataclasses.fields(cls))
    check_keys(data, ("kind", *names), where)
    values = {k: v for k, v in data.items() if k != "kind"}
    if isinstance(values.get("se"), Mapping):
        se = check_keys(values["se"], SE_KEYS, f"{where}.se")
        values["se"] = _build(SESpec, f"{where}.se", **se)
    return _build(cls, where, **values)


def block_to_data(spec: BlockSpec) -> dict[str, Any]:
    """The mapping form of a block (full field names); the inverse of ``block_from_data``."""
    out: dict[str, Any] = {"kind": spec.kind}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        out[f.name] = dataclasses.asdict(value) if isinstance(value, SESpec) else value
    return out


def stage_from_data(data: object, where: str) -> StageSpec:
    if isinstance(data, str):
        try:
            return parse_stage(data)
        except SpecError as err:
            raise err.with_context(where) from None
    if isinstance(data, Mapping) and "block" in data:
        check_keys(data, ("block", "repeats", "norm"), where)
        stage = stage_from_data(data["block"], f"{where}.block")
        if "repeats" in data:
            stage = _build(StageSpec, where, block=stage.block, repeats=data["repeats"])
        return stage.replace(norm=norm_from_data(data.get("norm"), f"{where}.norm"))
    if isinstance(data, Mapping):
        rest = {k: v for k, v in data.items() if k not in ("repeats", "norm")}
        block = block_from_data(rest, where)
        return _build(StageSpec, where, block=block, repeats=data.get("repeats", 1),
                      norm=norm_from_data(data.get("norm"), f"{where}.norm"))
    raise SpecError("must be a stage string (e.g. 'mbconv_r2_k3_s2_e6_c24_relu6') or a "
                    "mapping", (where,))


def norm_from_data(data: object, where: str) -> NormPolicy | None:
    """A ``norm:`` mapping (``bn_eps``, ``bn_momentum``, ``ln_eps``); ``None`` when absent."""
    if data is None:
        return None
    return _build(NormPolicy, where, **check_keys(data, NORM_KEYS, where))


def norm_to_data(norm: NormPolicy) -> dict[str, float]:
    return {k: v for k, v in dataclasses.asdict(norm).items() if v is not None}


def weights_from_data(data: object, where: str) -> tuple[WeightsLayout, ...]:
    """A ``weights:`` mapping, source → layout name, or source → ``{layout: name, <option>:
    value, ...}`` (``nasscale.weights.layouts``); ``()`` when absent.  The form is checked
    here; the names and options against the layouts when weights are loaded or exported
    (``nasscale.weights.layouts.check_layout``: the weights layer sits above the grammar)."""
    if data is None:
        return ()
    check_keys(data, WEIGHT_SOURCES, where)
    out = []
    for source, value in data.items():
        at = f"{where}.{source}"
        if isinstance(value, Mapping):
            if "layout" not in value:
                raise SpecError("missing field 'layout' (the layout's name)", (at,))
            options = {k: v for k, v in value.items() if k != "layout"}
            if not all(isinstance(k, str) for k in options):
                raise SpecError("option names must be strings", (at,))
            name = value["layout"]
            if not isinstance(name, str):
                raise SpecError(f"must be a layout name, got {name!r}", (f"{at}.layout",))
        elif isinstance(value, str):
            name, options = value, {}
        else:
            raise SpecError(f"must be a layout name or a mapping with 'layout' and the layout's "
                            f"options, got {value!r}", (at,))
        out.append(WeightsLayout(source=source, layout=name,
                                 options=tuple(sorted(options.items()))))
    return tuple(out)


def weights_to_data(weights: tuple[WeightsLayout, ...]) -> dict[str, Any]:
    """The ``weights:`` mapping of ``weights_from_data`` (a bare name where there are no
    options)."""
    return {w.source: ({"layout": w.layout, **dict(w.options)} if w.options else w.layout)
            for w in weights}


def _list(data: object, where: str) -> list:
    if data is None:
        return []
    if not isinstance(data, list):
        raise SpecError(f"must be a list, got {type(data).__name__}", (where,))
    return data


# --- networks -------------------------------------------------------------------------------

def network_from_data(data: object, where: str = "") -> NetworkSpec:
    """A ``NetworkSpec`` from a parsed YAML mapping; errors carry the field path."""
    data = check_keys(data, NETWORK_KEYS, where, required=("name", "stages"))

    def at(key: str) -> str:
        return f"{where}.{key}" if where else key

    stem = tuple(block_from_data(b, f"{at('stem')}[{i}]")
                 for i, b in enumerate(_list(data.get("stem"), at("stem"))))
    stages = tuple(stage_from_data(s, f"{at('stages')}[{i}]")
                   for i, s in enumerate(_list(data.get("stages"), at("stages"))))
    head_data = dict(check_keys(data.get("head") or {}, HEAD_KEYS, at("head")))
    head_blocks = tuple(block_from_data(b, f"{at('head')}.blocks[{i}]")
                        for i, b in enumerate(_list(head_data.pop("blocks", None),
                                                    at("head.blocks"))))
    if "hidden" in head_data:
        head_data["hidden"] = tuple(_list(head_data["hidden"], at("head.hidden")))
    head = _build(HeadSpec, at("head"), blocks=head_blocks, **head_data)
    rounding = _build(RoundingPolicy, at("rounding"),
                      **check_keys(data.get("rounding") or {}, ROUNDING_KEYS, at("rounding")))
    norm = norm_from_data(data.get("norm"), at("norm")) or NormPolicy()
    weights = weights_from_data(data.get("weights"), at("weights"))
    expected = None
    if data.get("expected") is not None:
        expected = _build(Expected, at("expected"),
                          **check_keys(data["expected"], EXPECTED_KEYS, at("expected")))
    scalars = {k: data[k] for k in ("name", "family", "paper", "reference", "resolution",
                                    "num_classes", "in_channels", "drop_path_rate") if k in data}
    for key in ("family", "paper", "reference"):
        if key in scalars and not isinstance(scalars[key], str):
            raise SpecError(f"must be a string, got {scalars[key]!r}", (at(key),))
    try:
        return NetworkSpec(stem=stem, stages=stages, head=head, rounding=rounding,
                           norm=norm, expected=expected, weights=weights, **scalars)
    except SpecError as err:
        raise err.with_context(where) if where else err from None


def _rounding_data(rounding: RoundingPolicy) -> dict:
    """The rounding policy as written; ``fixed_depth`` only when set (it came later, and
    every network written before it stays byte for byte the same)."""
    out = dataclasses.asdict(rounding)
    if out.get("fixed_depth") == "none":
        del out["fixed_depth"]
    return out


def network_to_data(spec: NetworkSpec) -> dict[str, Any]:
    """The YAML mapping of a network (blocks as strings); ``network_from_data`` inverts it."""
    out: dict[str, Any] = {"name": spec.name}
    for key in ("family", "paper", "reference"):
        if getattr(spec, key):
            out[key] = getattr(spec, key)
    if spec.weights:
        out["weights"] = weights_to_data(spec.weights)
    out.update(resolution=spec.resolution, num_classes=spec.num_classes,
               in_channels=spec.in_channels, drop_path_rate=spec.drop_path_rate,
               rounding=_rounding_data(spec.rounding))
    if not spec.norm.is_default():
        out["norm"] = norm_to_data(spec.norm)
    out.update(stem=[format_block(b) for b in spec.stem],
               stages=[format_stage(s) if s.norm is None else
                       {"block": format_stage(s), "norm": norm_to_data(s.norm)}
                       for s in spec.stages])
    head = spec.head
    out["head"] = {"blocks": [format_block(b) for b in head.blocks], "pool": head.pool,
                   "norm": head.norm, "hidden": list(head.hidden),
                   "hidden_activation": head.hidden_activation, "dropout": head.dropout}
    if head.hidden_norm != "none":
        out["head"]["hidden_norm"] = head.hidden_norm
    for flag in ("distill", "deploy"):  # written where set (RepViT's head)
        if getattr(head, flag):
            out["head"][flag] = True
    if spec.expected is not None:
        out["expected"] = {k: v for k, v in dataclasses.asdict(spec.expected).items()
                           if v not in (None, "")}
    return out


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    return text.strip().removesuffix("\n...").removesuffix("...").strip()


def dump_network(spec: NetworkSpec) -> str:
    """YAML text of a network, one block per line, with shape comments where it resolves."""
    data = network_to_data(spec)
    comments: dict[tuple[str, int], str] = {}
    try:
        for b in resolve(spec).blocks:
            h, w = b.in_hw
            if b.section == "stage" and b.repeat == 0:
                comments[("stages", b.stage)] = f"stage {b.stage + 1}, {h}x{w} in"
            elif b.section != "stage":
                comments[(b.section, b.repeat)] = f"{h}x{w} in"
    except NasscaleError:
        pass  # a network that does not resolve at its resolution is still written

    def block_lines(section: str, blocks: list[str], indent: str) -> list[str]:
        out = []
        for i, block in enumerate(blocks):
            note = comments.get((section, i))
            text = block if isinstance(block, str) else _scalar(block)  # a stage with norm
            out.append(f"{indent}- {text}" + (f"  # {note}" if note else ""))
        return out

    lines = [f"# {spec.name}: nasscale network spec (block strings: nasscale.grammar.text)"]
    for key, value in data.items():
        if key in ("stem", "stages"):
            lines.append(f"{key}:" + ("" if value else " []"))
            lines += block_lines(key, value, "  ")
        elif key == "head":
            lines.append("head:")
            lines.append("  blocks:" + ("" if value["blocks"] else " []"))
            lines += block_lines("head", value["blocks"], "    ")
            lines += [f"  {hk}: {_scalar(value[hk])}" for hk in HEAD_KEYS[1:] if hk in value]
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


# --- files ----------------------------------------------------------------------------------

def _line_of(text: str, path: str) -> int | None:
    """1-based line of a field path like ``stages[3].block`` in a YAML text, if it can be found."""
    try:
        node = yaml.compose(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError:
        return None
    import re

    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if node is None:
            return None
        if part.startswith("["):
            if not isinstance(node, yaml.SequenceNode):
                break
            idx = int(part[1:-1])
            if idx >= len(node.value):
                break
            node = node.value[idx]
        else:
            if not isinstance(node, yaml.MappingNode):
                break
            for key_node, value_node in node.value:
                if key_node.value == part:
                    node = value_node
                    break
            else:
                break
    return None if node is None else node.start_mark.line + 1


#: Lists and mappings nested deeper than this are refused while the file is parsed: nasscale's
#: files nest at most 5 levels (a study's sampler options), and PyYAML composes nodes
#: recursively, so a file of 10,000 ``[`` would end in a RecursionError instead of an error.
MAX_YAML_DEPTH = 64

MERGE_TAG = "tag:yaml.org,2002:merge"


def _place(first, again) -> str:
    """Where ``first`` is: ``line 3``, or ``line 3, column 12`` when ``again`` is on the same
    line (a flow mapping such as ``{a: 1, a: 2}``)."""
    column = f", column {first.column + 1}" if first.line == again.line else ""
    return f"line {first.line + 1}{column}"


class UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping, block or flow (plain YAML
    keeps the last one silently, so a repeated ``trials:`` would quietly win), and lists or
    mappings nested deeper than ``MAX_YAML_DEPTH``."""

    _depth = 0

    def compose_node(self, parent, index):
        """Count the nesting while composing; refuse it past ``MAX_YAML_DEPTH``."""
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"lists and mappings nested more than {MAX_YAML_DEPTH} levels deep "
                "(nasscale files need a few)", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor):
        """The mapping node, with its pairs as written kept aside: a merge (``<<:``) rewrites
        ``node.value`` before the mapping is checked for repeated keys."""
        node = super().compose_mapping_node(anchor)
        node.written_pairs = tuple(node.value)
        return node

    def construct_mapping(self, node, deep=False):
        """The mapping, or a ``ConstructorError`` at the second of two equal keys."""
        seen: dict = {}
        for key_node, _ in getattr(node, "written_pairs", node.value):
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not None:
                where = _place(first, key_node.start_mark)
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on {where})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        """An integer, or an error for one too long for Python to read (over 4,300 digits)."""
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(node.value):,} characters is too long to read",
                node.start_mark) from None


UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", UniqueKeyLoader.construct_yaml_int)


def read_yaml(path: str | Path) -> tuple[Any, str]:
    """Safe-load a YAML file (a repeated key or nesting past ``MAX_YAML_DEPTH`` is an error);
    a syntax error becomes ``file:line: ...``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise NasscaleError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise NasscaleError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); "
                            "save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader), text
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise NasscaleError(f"{path}{line}: not valid YAML: {problem}") from None


def in_file(err: SpecError, path: str | Path, text: str) -> NasscaleError:
    """Prefix an error with ``file:line`` of the field it names."""
    line = _line_of(text, err.where[0]) if err.where else None
    return SpecError(err.message, (f"{path}{f':{line}' if line else ''}", *err.where))


def load_network_file(path: str | Path) -> NetworkSpec:
    """A network from a YAML file, checked to resolve at its own resolution."""
    data, text = read_yaml(path)
    try:
        spec = network_from_data(data)
        resolve(spec)
    except SpecError as err:
        raise in_file(err, path, text) from None
    return spec
