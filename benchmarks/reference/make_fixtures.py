"""Write the reference fixtures the weights tests read (run in the reference venv).

    $REF_ENV/bin/python benchmarks/reference/make_fixtures.py

For every zoo network that torchvision or timm implements (benchmarks/reference/models.py):
the reference state dict's tensor names and shapes, its parameter count and its BatchNorm and
LayerNorm constants -> tests/fixtures/weights/{torchvision,timm}.json.gz ("networks"; and under
"deploy" the same of the reference's deploy form of each re-parameterisable network, after
timm's ``reparameterize_model``).  For a few small
networks, the reference's output on a seeded input when every tensor is filled from its name
(nasscale.weights.seeded) -> tests/fixtures/weights/outputs.json.  These are facts recorded
from torchvision and timm; no code or weights of theirs are copied.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

from nasscale.weights.seeded import seeded_state_dict  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "weights"
#: (source, network, input size) whose seeded outputs are recorded
OUTPUTS = [("torchvision", "mobilenet_v3_small", 96), ("timm", "mobilevit_xxs", 64),
           ("timm", "mobilenet_v1", 96),
           ("torchvision", "swin_t", 224), ("timm", "efficientnet_b0", 64),
           ("torchvision", "mnasnet0_5", 64), ("timm", "mnasnet_small", 64),
           ("timm", "lcnet_050", 64),
           ("timm", "mobilevit_v2_050", 72),  # 72: three blocks pad to whole patches
           ("timm", "mobileone_s0", 64), ("timm", "repvit_m0_9", 64),
           ("timm", "fastvit_t8", 64), ("timm", "fastvit_sa12", 64)]


def describe(source: str, network: str, deploy: bool = False) -> dict:
    m = models.create(source, network, meta=True, deploy=deploy)
    bn = sorted({(x.eps, x.momentum) for x in m.modules()
                 if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)})
    ln = sorted({x.eps for x in m.modules() if isinstance(x, torch.nn.LayerNorm)})
    return {"model": models.SOURCES[source][network],
            "params": sum(p.numel() for p in m.parameters()),
            "bn": [list(x) for x in bn], "ln": ln,
            "tensors": [[k, list(v.shape)] for k, v in m.state_dict().items()]}


def outputs(source: str, network: str, size: int) -> dict:
    m = models.create(source, network).eval()
    m.load_state_dict(seeded_state_dict(m.state_dict()))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = m(x)
    return {"source": source, "network": network, "size": size, "input_seed": 0,
            "logits": [[round(float(v), 6) for v in row] for row in y]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    import timm
    import torchvision

    for source, table in models.SOURCES.items():
        data = {"versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                             "timm": timm.__version__},
                "networks": {net: describe(source, net) for net in table},
                # the deploy form of the re-parameterisable networks (nasscale.reparameterize)
                "deploy": {net: describe(source, net, deploy=True) for net in table
                           if models.reparameterizable(net)}}
        with gzip.open(OUT / f"{source}.json.gz", "wt", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        print(f"{source}: {len(table)} networks")
    rows = [outputs(*o) for o in OUTPUTS]
    (OUT / "outputs.json").write_text(json.dumps(rows) + "\n", encoding="utf-8")
    print(f"outputs: {len(rows)}")


if __name__ == "__main__":
    main()
