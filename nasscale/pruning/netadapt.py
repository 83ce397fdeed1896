"""NetAdapt (Yang et al., "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile
Applications", ECCV 2018), on nasscale specs.

Each iteration ``i`` tightens the resource limit by a step that decays geometrically::

    limit_i = max(target, resource(current) - initial_step · resource(start) · decay^i)

and makes one *proposal per width group* (``nasscale.transfer.groups``): the group at the largest
width, a multiple of its unit, whose network meets ``limit_i`` (the other groups unchanged).
With weights, each proposal keeps the largest-norm filters (``nasscale.transfer.carry``).
Every proposal is scored (``nasscale.pruning.evaluate``), and the one with the best score change
per unit of resource saved, ``(score - score(current)) / (resource(current) - resource)``,
becomes the current network.  This repeats until the target is met.  With the ``train``
evaluator the scoring is NetAdapt's *short-term* fine-tuning (a few steps per proposal, from
the carried weights); the *long-term* fine-tuning of the final network happens once, after
``netadapt`` returns and the result is settled (``nasscale.pruning.run``).

Defaults: ``initial_step=0.025`` (2.5 % of the start's resource) and ``decay=0.96``, the values
of the example that comes with the authors' PyTorch reimplementation of NetAdapt.  Each
iteration costs one evaluation per group, so the step sets the run time: a 0.75x target takes
about 13 iterations (the steps add up to 0.025 · (1 - 0.96^n) / 0.04).  A smaller step cuts
each layer more gently (a 2.5 % latency cut taken from one layer of a 20-layer network removes
about half of that layer) at the price of more iterations; ``decay`` < 1 makes the steps
smaller as the network nears the target, so the last iteration does not overshoot by much.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from nasscale.errors import NasscaleError, SpecError
from nasscale.pruning.resource import Resource, Target, format_amount
from nasscale.specs import NetworkSpec, resolve
from nasscale.transfer.groups import (
    Group,
    block_names,
    compact,
    prunable,
    prune,
    width_groups,
)


@dataclass(frozen=True)
class Options:
    initial_step: float = 0.025
    decay: float = 0.96
    max_iterations: int = 200
    #: at most this many carrier timings per group and iteration when a latency table lacks
    #: the blocks of a candidate width (each one makes later look-ups exact)
    confirm_tries: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.initial_step < 1:
            raise SpecError(f"must be in (0, 1), got {self.initial_step!r}", ("--step",))
        if not 0 < self.decay <= 1:
            raise SpecError(f"must be in (0, 1], got {self.decay!r}", ("--decay",))


@dataclass(frozen=True)
class Continuation:
    """Where an earlier run stopped, for a run that goes on from its result: its iteration
    count (the step keeps decaying from there), its block names and its network's name; for a
    run resumed after a kill also the first run's start resource and score (the target and
    the step are fractions of the start) and the current network's score (not scored again:
    a training evaluator would fine-tune it once more)."""

    iteration: int
    names: list[str]
    base_name: str
    start_resource: float | None = None
    start_score: float | None = None
    score: float | None = None


@dataclass
class Proposal:
    group: str
    old_width: int
    width: int
    spec: NetworkSpec
    resource: float
    score: float | None = None
    model: object = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.group} {self.old_width}->{self.width}"


@dataclass
class Iteration:
    index: int
    limit: float
    group: str
    old_width: int
    width: int
    resource: float
    score: float
    delta_score: float
    saved: float
    proposals: int
    flops: int
    params: int
    seconds: float
    spec: NetworkSpec = field(repr=False, default=None)
    #: the network in its prunable form and its module (with weights), to resume from
    prunable: NetworkSpec = field(repr=False, default=None)
    model: object = field(repr=False, default=None)
    start_resource: float | None = field(repr=False, default=None)
    start_score: float | None = field(repr=False, default=None)

    def row(self) -> dict:
        return {"iteration": self.index, "group": self.group, "width_from": self.old_width,
                "width": self.width, "limit": self.limit, "resource": self.resource,
                "score": self.score, "score_change": self.delta_score, "saved": self.saved,
                "proposals": self.proposals, "flops": self.flops, "params": self.params,
                "seconds": round(self.seconds, 2)}


@dataclass
class Result:
    start: NetworkSpec
    final: NetworkSpec
    target: Target
    limit: float
    start_resource: float
    final_resource: float
    start_score: float
    iterations: list[Iteration]
    metric: str
    resource_note: str
    evaluator_note: str
    model: object = None  # final module, when weights were carried
    #: NetAdapt's long-term fine-tuning of the final network (``run_prune``): epochs, lr,
    #: accuracy_before, accuracy_after, steps, seconds, device, history; None when not run
    long_term: dict | None = None
    measured_ms: float | None = None  # the final network, measured (latency targets)
    start_measured_ms: float | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    #: what the input weights file said about its data (classes, normalisation, data name),
    #: carried into ``pruned.pt``
    weights_meta: dict = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.final_resource <= self.limit * (1 + 1e-9)


def minimal_widths(spec: NetworkSpec, groups: list[Group]) -> dict[str, int]:
    """The smallest width of every group that keeps the network's structure (greedy, in order)."""
    widths: dict[str, int] = {}
    for g in groups:
        for w in reversed(g.widths_below()):
            try:
                prune(spec, {**widths, g.name: w}, groups)
            except SpecError:
                continue
            widths[g.name] = w
            break
    return widths


def netadapt(spec: NetworkSpec, target: Target, resource: Resource, evaluator,
             options: Options = Options(), model=None,
             log: Callable[[str], None] | None = None,
             on_iteration: Callable[[Iteration], None] | None = None, *,
             resume: Continuation | None = None, progress: bool = False) -> Result:
    """Prune ``spec`` until ``resource`` meets ``target`` (see module doc).  ``model``: a module
    of ``spec`` with trained weights (carried into every proposal), or ``None``.  ``resume``
    goes on from an earlier run (:class:`Continuation`).  ``progress``: a bar on stderr of
    the proposals scored within each iteration."""
    from nasscale.costs.analytic import deployed_cost

    t0 = time.perf_counter()
    log = log or (lambda _msg: None)
    current = prunable(spec)
    if model is not None:
        model = regroup_model(model, current)
    start_value = resource.confirm(current)
    if resume is not None and resume.start_resource is not None:
        start_value = resume.start_resource  # a resumed run: the first run's start
    limit = target.limit(start_value)
    # groups are named after the network as written
    names = resume.names if resume else block_names(spec)
    base_name = resume.base_name if resume else spec.name
    groups = width_groups(current, names)
    if not groups:
        raise NasscaleError(f"{spec.name} has no width that can be pruned")
    smallest = prune(current, minimal_widths(current, groups), groups)
    floor = resource.confirm(smallest)
    if floor > limit:
        need, want = (format_amount(target.metric, v) for v in (start_value, limit))
        raise NasscaleError(
            f"target {target} is unreachable: {spec.name} needs {need}, the target is {want}, "
            f"and even with every width at its minimum (8 channels, or one attention unit) it "
            f"needs {format_amount(target.metric, floor)}")
    weighted = model is not None
    if resume is not None and resume.score is not None:
        score, start_score = resume.score, resume.start_score
        value = resource.confirm(current)
    else:
        score, scored_model = evaluator.score(current, model)
        if weighted:
            model = scored_model  # (fine-tuned, for a training evaluator)
        start_score = score
        value = start_value
    iterations: list[Iteration] = []
    i = resume.iteration if resume else 0
    while value > limit and i < options.max_iterations:
        t_it = time.perf_counter()
        step = options.initial_step * start_value * options.decay ** i
        it_limit = max(limit, value - step)
        proposals, it_limit = _proposals_within(current, groups, value, it_limit, limit,
                                                resource, options, target.metric, i)
        log(f"iteration {i + 1}: limit {format_amount(target.metric, it_limit)}, "
            f"{len(proposals)} proposals")
        chosen = _best_proposal(proposals, current, groups, model if weighted else None,
                                evaluator, score, value, i, progress)
        groups = width_groups(chosen.spec, names)
        cost = deployed_cost(chosen.spec)
        it = Iteration(index=i + 1, limit=it_limit, group=chosen.group,
                       old_width=chosen.old_width, width=chosen.width,
                       resource=chosen.resource, score=chosen.score,
                       delta_score=chosen.score - score, saved=value - chosen.resource,
                       proposals=len(proposals), flops=cost.flops, params=cost.params,
                       seconds=time.perf_counter() - t_it,
                       spec=compact(chosen.spec).replace(name=f"{base_name}_netadapt{i + 1}"),
                       prunable=chosen.spec, model=chosen.model if weighted else None,
                       start_resource=start_value, start_score=start_score)
        iterations.append(it)
        if on_iteration:
            on_iteration(it)
        current, value, score = chosen.spec, chosen.resource, chosen.score
        model = chosen.model if weighted else None
        i += 1
    if value > limit:
        raise NasscaleError(f"stopped after {options.max_iterations} iterations at "
                            f"{format_amount(target.metric, value)} (target "
                            f"{format_amount(target.metric, limit)}); raise --max-iterations")
    final = compact(current).replace(
        name=f"{base_name}_pruned", expected=None, reference="",
        paper=f"{base_name} pruned by NetAdapt to {target} ({i} iterations)")
    return Result(start=spec, final=final, target=target, limit=limit,
                  start_resource=start_value, final_resource=value, start_score=start_score,
                  iterations=iterations, metric=target.metric,
                  resource_note=resource.describe(), evaluator_note=evaluator.describe(),
                  model=model, seconds=time.perf_counter() - t0)


def _proposals_within(current, groups, value: float, it_limit: float, limit: float,
                      resource: Resource, options: Options, metric: str, i: int):
    """This iteration's proposals, halving the step (at most 6 times) while no single group
    alone reaches the iteration's limit.  Returns (proposals, the limit they reach)."""
    proposals = []
    for _ in range(6):
        proposals = _proposals(current, groups, it_limit, resource, options)
        if proposals:
            return proposals, it_limit
        it_limit = max(limit, value - (value - it_limit) / 2)  # no group alone gets there
    raise NasscaleError(f"iteration {i + 1}: no single width group can bring "
                        f"{format_amount(metric, value)} down to "
                        f"{format_amount(metric, it_limit)}")


def _best_proposal(proposals, current, groups, model, evaluator, score: float, value: float,
                   i: int, progress: bool = False):
    """Score every proposal (weights carried from ``model`` when there is one) and return the
    one with the best score gain per unit of resource saved; a proposal that fails to score
    records why and is skipped."""
    from nasscale.reports.progress import Progress

    bar = Progress(len(proposals), f"iteration {i + 1}: proposals scored", enabled=progress)
    best = None
    for k, p in enumerate(proposals):
        bar.update(k, p.label)
        p_model = _carried(model, current, p, groups) if model is not None else None
        try:
            p.score, p.model = evaluator.score(p.spec, p_model)
        except (NasscaleError, RuntimeError, ValueError) as err:
            p.error = str(err)
            continue
        if not math.isfinite(p.score):
            p.error = f"score {p.score}"
            continue
        gain = (p.score - score) / max(value - p.resource, 1e-12)
        if best is None or gain > best[0]:
            if best is not None:
                best[1].model = None  # keep one proposal's module in memory, not all
            best = (gain, p)
        else:
            p.model = None
    bar.update(len(proposals))
    bar.close()
    if best is None:
        reasons = "; ".join(f"{p.label}: {p.error}" for p in proposals[:3])
        raise NasscaleError(f"iteration {i + 1}: every proposal failed to score ({reasons})")
    return best[1]


def _proposals(current: NetworkSpec, groups: list[Group], limit: float, resource: Resource,
               options: Options) -> list[Proposal]:
    """For each group, the network with that group at the largest width meeting ``limit``."""
    out = []
    for g in groups:
        found = None
        tries = 0
        for w in g.widths_below():
            try:
                spec = prune(current, {g.name: w}, groups)
            except SpecError:
                continue  # this width would change the structure; try the next one
            value = resource.value(spec)
            if value > limit:
                continue
            confirmed = resource.confirm(spec)
            if confirmed <= limit:
                found = Proposal(g.name, g.width, w, spec, confirmed)
                break
            tries += 1
            if tries >= options.confirm_tries:
                break
        if found is not None:
            out.append(found)
    return out


def regroup_model(model, spec: NetworkSpec):
    """A module of ``spec`` holding ``model``'s weights, where ``spec`` has the same blocks in
    the same order as ``model``'s network, grouped into stages differently (``flatten`` and
    ``compact`` regroup, nothing else)."""
    import torch

    from nasscale.modules import build_network
    from nasscale.transfer.carry import block_modules

    out = build_network(spec)
    src, dst = block_modules(model), block_modules(out)
    if len(src) != len(dst):
        raise NasscaleError(f"the weights do not match {spec.name}'s blocks "
                            f"({len(src)} against {len(dst)})")
    with torch.no_grad():
        for a, b in zip(src, dst):
            b.load_state_dict(a.state_dict())
        out.head.load_state_dict(model.head.state_dict())
    return out.train(model.training)


def _carried(model, current: NetworkSpec, p: Proposal, groups: list[Group]):
    from nasscale.modules import build_network
    from nasscale.transfer.carry import carry_weights

    new_model = build_network(p.spec)
    carry_weights(model, resolve(current), new_model, resolve(p.spec), groups,
                  {p.group: p.width})
    new_model.train(model.training)
    return new_model
