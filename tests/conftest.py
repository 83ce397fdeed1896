import os

import pytest
import torch

# Tests run on 2-core CI machines: one intra-op thread per process keeps them predictable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def zoo_names():
    import nasscale

    return nasscale.names()


#: Networks above this many parameters are not built at full depth in tests: building (weight
#: initialisation) alone takes tens of seconds on 2 cores.
BUILD_LIMIT = 100_000_000


def shallow(spec):
    """``spec`` with every stage cut to at most two repeats, for networks too big to build in a
    test.  Repeats after the first are identical (stride 1, input width = output width), except
    that Swin alternates plain and shifted windows, so two repeats keep every distinct block:
    tracing the shallow copy checks every block formula at the network's real feature sizes."""
    stages = tuple(s.replace(repeats=min(s.repeats, 2)) for s in spec.stages)
    return spec.replace(name=f"{spec.name}_shallow", stages=stages, expected=None)


def affordable(spec):
    """The spec itself when it is cheap to build, else its ``shallow`` copy."""
    import nasscale

    return spec if nasscale.count(spec).params <= BUILD_LIMIT else shallow(spec)


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server (tests/support/postgres.py), or a skip naming why not."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "support"))
    from postgres import PostgresServer

    server = PostgresServer()
    reason = server.unavailable()
    if reason:
        pytest.skip(f"PostgreSQL: {reason}")
    try:
        server.start()
    except Exception as err:  # the server could not start here
        server.stop()
        pytest.skip(f"PostgreSQL server could not be started: {err}")
    yield server
    server.stop()


@pytest.fixture
def support_on_path(monkeypatch):
    """User evaluators live in tests/support; worker processes find them through PYTHONPATH
    (modules that need it: ``pytestmark = pytest.mark.usefixtures("support_on_path")``)."""
    from pathlib import Path

    support = str(Path(__file__).parent / "support")
    monkeypatch.syspath_prepend(support)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (support, os.environ.get("PYTHONPATH", "")) if p))


#: A tiny test architecture per block kind (stages after a conv stem): adding a kind means
#: adding a row here; tests/test_modules.py checks every registry on it, test_grammar
#: round-trips it.
TINY = {
    "conv": ["conv_k3_s2_c16_relu"], "ds": ["ds_k3_s2_c16_relu"],
    "mbconv": ["mbconv_r2_k3_s2_e4_c16_silu_se0.25-in-sigmoid-silu-d1"],
    "fused": ["fused_r2_k3_s2_e4_c16_silu", "fused_k3_s1_e1_c16_silu"],
    "bneck": ["bneck_r2_k5_s2_m32_c16_hswish_se"],
    "convnext": ["lndown_p2_c16", "convnext_r2_k7_e4_c16_gelu_ls1e-06"],
    "patchify": ["patchify_p2_c16"], "lndown": ["lndown_p2_c24"],
    "mobilevit": ["mbconv_k3_s2_e2_c16_silu", "mobilevit_r2_k3_p2_d16_l2_h2_e2_c12_silu"],
    "mobilevit2": ["mbconv_k3_s2_e2_c16_silu", "mobilevit2_r2_k3_p2_d16_l2_e2_c12_silu"],
    "vitembed": ["vitembed_p4_c16"], "vit": ["vitembed_p4_c16", "vit_r2_h2_e2_c16_gelu"],
    "swinembed": ["swinembed_p2_c16"],
    "swin": ["swinembed_p2_c16", "swin_r3_w3_h2_e2_c16_gelu"],
    "patchmerge": ["swinembed_p2_c16", "patchmerge_c24"],
    "uib": ["uib_a3_k5_s2_e4_c16_relu", "uib_r2_a3_k0_s1_e2_c16_relu_ls1e-05",
            "uib_a0_k3_s2_e3_c24_relu", "uib_a5_k0_s2_e2_c24_relu", "uib_a0_k0_e2_c24_relu"],
    "mqa": ["conv_k3_s2_c16_relu", "mqa_k3_h2_v2_d8_c16_ls1e-05", "mqa_r2_k3_h4_d8_c16"],
}
