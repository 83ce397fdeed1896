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
    "repconv": ["repconv_k3_s2_b2_c16_relu", "repconv_r2_k3_s1_b3_c16_dw_relu",
                "repconv_k1_s1_c24_relu_se0.25-mid-sigmoid-relu-d8", "repconv_k3_c24_relu_deploy"],
    "mobileone": ["mobileone_r2_k3_s2_b4_c16_relu", "mobileone_k3_s1_b1_c24_relu",
                  "mobileone_k3_s1_b2_c24_relu_se0.25-mid-sigmoid-relu-d8",
                  "mobileone_k3_s2_b2_c32_relu_deploy"],
    "repvit": ["repvit_r2_k3_e2_c8_gelu_se0.25-in-sigmoid-relu-d8", "repvit_k3_e2_c8_gelu",
               "repvit_k3_e2_c8_gelu_deploy"],
    "repvitdown": ["repvitdown_k3_e2_c16_gelu", "repvit_k3_e2_c16_gelu",
                   "repvitdown_k3_e2_c24_gelu_deploy"],
    "repvitstem": ["repvitstem_c16_gelu", "repvit_k3_e2_c16_gelu"],
    "repmixer": ["repmixer_r2_k3_e3_c8_gelu_ls1e-05", "repmixer_k5_m12_c8_gelu_ls0",
                 "repmixer_k3_e2_c8_gelu_ls0.5_deploy"],
    "fvattn": ["fvattn_r2_h2_e2_c8_gelu_ls1e-05", "fvattn_m12_c8_gelu_ls0"],
    # with repconv's grouped form, FastViT's other conv of one group per input channel
    "replk": ["replk_k7_sk3_s2_c16", "replk_k5_sk3_s1_c24", "replk_k7_sk3_s2_c48_deploy",
              "repconv_k3_c96_grouped_gelu_se0.0625-mid-sigmoid-relu-d1",
              "repconv_k3_c120_grouped_gelu"],
    "repcpe": ["replk_k7_sk3_s2_c16", "repcpe_k7_c16", "repcpe_k3_c16_deploy"],
}


# --- re-parameterisable networks (tests/test_reparam.py, test_repvit.py, test_fastvit.py) -----

def trained_network(spec, seed: int = 0) -> torch.nn.Module:
    """The built network with its weights and BatchNorm statistics moved off their initial
    values (a fusion that ignored the statistics or the BN affine would show), in eval mode."""
    import nasscale

    torch.manual_seed(seed)
    model = nasscale.build(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        model.train()
        for _ in range(3):
            model(torch.randn(8, 3, spec.resolution, spec.resolution))
    return model.eval()


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def assert_both_forms_count(name: str, figures: tuple[int, int, int, int]) -> None:
    """A zoo network's (params, FLOPs, deploy params, deploy FLOPs): the analytic counts of its
    train form and of ``nasscale.reparameterize``'s deploy form, and its YAML's ``expected``."""
    import nasscale

    spec = nasscale.load(name)
    train, deploy = nasscale.count(spec), nasscale.count(nasscale.reparameterize(spec))
    assert (train.params, train.flops, deploy.params, deploy.flops) == figures
    e = spec.expected
    assert (e.params, e.flops, e.deploy_params, e.deploy_flops) == figures
    assert spec.reparameterizable and not spec.deployed


def assert_exports_back(model: torch.nn.Module, spec, state: dict, source: str) -> None:
    """``model`` (loaded from ``state`` of ``source``) exports ``state`` back tensor for tensor,
    and its nasscale export loads into an equal module."""
    from nasscale.weights import export_weights, load_weights

    out = export_weights(model, spec, target=source)
    assert set(out) == set(state)
    assert all(torch.equal(out[k], state[k]) for k in state)
    again = load_weights(spec, export_weights(model, spec, "nasscale"), source="nasscale")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
