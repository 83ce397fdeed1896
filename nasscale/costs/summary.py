"""Per-stage rows of a network's costs, for ``nasscale show`` and reports."""
from __future__ import annotations

from dataclasses import dataclass

from nasscale.costs.analytic import Cost, NetworkCost
from nasscale.grammar.text import format_block


@dataclass(frozen=True)
class StageRow:
    """One row of the ``show`` table: a stem block, a stage, a head block, or the classifier."""

    label: str  # "stem", "stage 1", ..., "head", "classifier"
    kind: str
    block: str  # the block's text form (first repeat)
    repeats: int
    in_channels: int
    out_channels: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    cost: Cost

    def as_dict(self) -> dict:
        return {"label": self.label, "kind": self.kind, "block": self.block,
                "repeats": self.repeats, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride,
                "in_hw": list(self.in_hw), "out_hw": list(self.out_hw),
                "params": self.cost.params, "flops": self.cost.flops,
                "conv_flops": self.cost.conv, "linear_flops": self.cost.linear,
                "attention_flops": self.cost.attention}


def stage_rows(nc: NetworkCost) -> list[StageRow]:
    rn = nc.network
    groups: dict[tuple[str, int], list[int]] = {}
    for i, b in enumerate(rn.blocks):
        key = (b.section, b.stage if b.section == "stage" else b.repeat)
        groups.setdefault(key, []).append(i)
    rows = []
    for (section, idx), members in groups.items():
        first, last = rn.blocks[members[0]], rn.blocks[members[-1]]
        label = f"stage {idx + 1}" if section == "stage" else section
        rows.append(StageRow(label=label, kind=first.kind, block=format_block(first.spec),
                             repeats=len(members), in_channels=first.in_channels,
                             out_channels=last.out_channels, stride=first.stride,
                             in_hw=first.in_hw, out_hw=last.out_hw,
                             cost=Cost.total(nc.blocks[i] for i in members)))
    h = rn.head
    pool = "clstoken" if h.pool == "token" else "avgpool"
    rows.append(StageRow(label="classifier", kind="pool+linear",
                         block=("ln_" if h.norm == "ln_before_pool" else "") + pool
                         + ("_ln" if h.norm == "ln" else "")
                         + "".join(f"_fc{w}" for w in h.hidden) + f"_fc{h.num_classes}",
                         repeats=1, in_channels=h.in_channels, out_channels=h.num_classes,
                         stride=1, in_hw=h.hw, out_hw=(1, 1), cost=nc.head))
    return rows
