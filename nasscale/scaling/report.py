"""Base-versus-scaled reports for ``nasscale scale``: a JSON-ready record and a text table."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nasscale.costs.analytic import NetworkCost, deployed_cost
from nasscale.costs.summary import stage_rows
from nasscale.reports.text import FLOPS_CONVENTION, si, table
from nasscale.scaling.budget import Fit
from nasscale.scaling.scale import Compound, flops_factor
from nasscale.specs import NetworkSpec


@dataclass(frozen=True)
class Scaling:
    """One scaling of ``base`` into ``scaled`` by ``width`` and ``depth`` (and, for compound
    scaling, its ``compound`` coefficients; for a budget search, its ``fit``)."""

    base: NetworkSpec
    scaled: NetworkSpec
    width: float
    depth: float
    compound: Compound | None = None
    fit: Fit | None = None

    @property
    def resolution_scale(self) -> float:
        return self.scaled.resolution / self.base.resolution

    @property
    def ideal_flops_ratio(self) -> float:
        """The FLOPs ratio without rounding: (α·β²·γ²)^φ, or d·w²·r² for explicit ones."""
        if self.compound is not None:
            return self.compound.flops_factor
        return self.depth * self.width ** 2 * self.resolution_scale ** 2

    def costs(self) -> tuple[NetworkCost, NetworkCost]:
        """Base and scaled costs of the form that runs: the deploy form of a network with
        re-parameterisable blocks (its scaled train form is ``scaled``)."""
        return (deployed_cost(self.base),
                deployed_cost(self.scaled))


def _stage_pairs(base: NetworkCost, scaled: NetworkCost):
    return list(zip(stage_rows(base), stage_rows(scaled)))


def scaling_record(s: Scaling) -> dict:
    """Everything ``nasscale scale --format json`` prints."""
    base_cost, cost = s.costs()
    c = s.compound
    record = {
        "base": s.base.name, "name": s.scaled.name,
        "phi": None if c is None else c.phi, "alpha": None if c is None else c.alpha,
        "beta": None if c is None else c.beta, "gamma": None if c is None else c.gamma,
        "width": s.width, "depth": s.depth, "resolution": s.scaled.resolution,
        "base_resolution": s.base.resolution, "resolution_scale": s.resolution_scale,
        "params": cost.params, "flops": cost.flops,
        "base_params": base_cost.params, "base_flops": base_cost.flops,
        "params_ratio": cost.params / base_cost.params,
        "flops_ratio": cost.flops / base_cost.flops,
        "ideal_flops_ratio": s.ideal_flops_ratio,
        "flops_ratio_vs_ideal": cost.flops / base_cost.flops / s.ideal_flops_ratio,
        "rounding": dataclasses.asdict(s.scaled.rounding),
        "stages": [{"label": b.label,
                    "base": {"block": b.block, "repeats": b.repeats,
                             "out_channels": b.out_channels, "out_hw": list(b.out_hw)},
                    "scaled": {"block": r.block, "repeats": r.repeats,
                               "out_channels": r.out_channels, "out_hw": list(r.out_hw),
                               "params": r.cost.params, "flops": r.cost.flops}}
                   for b, r in _stage_pairs(base_cost, cost)],
        "target": None, "flops_convention": FLOPS_CONVENTION,
    }
    if s.fit is not None:
        f = s.fit
        record["target"] = {"metric": f.metric, "budget": f.budget, "used": f.used,
                            "fraction": f.fraction, "next_phi": f.above_phi,
                            "next": getattr(f.above_cost, f.metric)}
    return record


def _coefficient_lines(s: Scaling) -> list[list[str]]:
    c, r0, r = s.compound, s.base.resolution, s.scaled.resolution
    if c is None:
        how = ("given", "given", f"given ({r / r0:.4g} x {r0})")
    else:
        grid = s.base.rounding.resolution_divisor
        how = (f"beta^phi = {c.beta:g}^{c.phi:g} = {c.width:.4f}",
               f"alpha^phi = {c.alpha:g}^{c.phi:g} = {c.depth:.4f}",
               f"gamma^phi = {c.gamma:g}^{c.phi:g} = {c.resolution:.4f}: "
               f"{r0 * c.resolution:.1f} -> {r} (multiple of {grid})")
    return [["width", "1", f"x{s.width:.4g}", how[0]], ["depth", "1", f"x{s.depth:.4g}", how[1]],
            ["resolution", str(r0), str(r), how[2]]]


def scaling_text(s: Scaling) -> str:
    """The ``nasscale scale`` table: coefficients, per-stage widths and repeats, totals."""
    base_cost, cost = s.costs()
    c = s.compound
    title = (f"{s.base.name} -> {s.scaled.name}: "
             + ("explicit coefficients" if c is None else
                f"compound scaling phi={c.phi:g} (alpha={c.alpha:g} depth, beta={c.beta:g} "
                f"width, gamma={c.gamma:g} resolution)"))
    p = s.scaled.rounding
    policy = (f"rounding ({s.scaled.family or 'network'}): channels to multiples of {p.divisor} "
              f"(>= {p.min_ratio:.0%}), repeats by {p.depth}, stem {p.stem}, head {p.head}, "
              f"explicit exp widths by {p.mid}")
    lines = [title, policy, "",
             table(["dimension", "base", "scaled", "coefficient"], _coefficient_lines(s),
                   right="base scaled"), ""]
    body = []
    for b, r in _stage_pairs(base_cost, cost):
        body.append([r.label, r.block, f"{b.repeats}->{r.repeats}",
                     f"{b.out_channels}->{r.out_channels}",
                     f"{r.out_hw[0]}x{r.out_hw[1]}", si(r.cost.params), si(r.cost.flops)])
    lines += [table(["stage", "block (scaled)", "repeats", "out channels", "out HxW", "params",
                     "FLOPs"], body, right="repeats params FLOPs"), ""]
    fr = cost.flops / base_cost.flops
    ideal = ("(alpha*beta^2*gamma^2)^phi = "
             f"{flops_factor(c.alpha, c.beta, c.gamma):.4f}^{c.phi:g}" if c is not None
             else "depth*width^2*(resolution/base)^2")
    lines += [table(["total", "base", "scaled", "ratio"], [
        ["params", f"{base_cost.params:,}", f"{cost.params:,}",
         f"x{cost.params / base_cost.params:.3f}"],
        ["FLOPs", f"{base_cost.flops:,}", f"{cost.flops:,}", f"x{fr:.3f}"]],
        right="base scaled ratio"),
        f"FLOPs ratio x{fr:.3f} vs {ideal} = x{s.ideal_flops_ratio:.3f}: "
        f"{fr / s.ideal_flops_ratio:.3f} times the ideal (repeats round up; depthwise convs, "
        "SE and the stem grow with w, not w^2)"]
    if s.fit is not None:
        f = s.fit
        unit = "FLOPs" if f.metric == "flops" else "params"
        lines.append(f"target {si(f.budget)} {unit}: largest phi on a 0.001 grid = {f.phi:g}, "
                     f"{f.used:,} {unit} ({f.fraction:.1%} of the target); phi = "
                     f"{f.above_phi:g} would need {getattr(f.above_cost, f.metric):,} "
                     f"({getattr(f.above_cost, f.metric) / f.budget:.1%})")
    lines.append(FLOPS_CONVENTION + ".")
    return "\n".join(lines)
