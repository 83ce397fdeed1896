"""User evaluators for the search tests (loaded as python:evalfns:<name>)."""
import os
import time


def width_score(model, spec):
    """Deterministic and cheap: the sum of the stage widths."""
    return float(sum(s.block.out_channels for s in spec.stages))


def slow_score(model, spec):
    time.sleep(float(os.environ.get("NASSCALE_TEST_SLEEP", "0.4")))
    return width_score(model, spec)


def flaky_score(model, spec):
    """Fails like a real candidate would for some architectures: OOM, bad build."""
    width = int(width_score(model, spec))
    if width % 3 == 0:
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")
    if width % 3 == 1:
        raise ValueError("simulated build failure")
    return float(width)
