"""Held-out accuracy of an int8 export next to its fp32 network (``nasscale export --quantize
int8 --calibration DATA``)."""
from __future__ import annotations

from nasscale.export.calibration import held_out_top1
from nasscale.export.to_onnx import deployable


def quantized_accuracy(out, network, weights, resolution, normalise: bool, pte: bool,
                       data: str) -> str:
    """One line: held-out top-1 of the fp32 network and of its int8 export ``out``."""
    import numpy as np
    import torch

    spec, model, _, norm = deployable(network, weights, resolution, normalise)

    def fp32(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    if pte:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(out.path)).load_method("forward")

        def int8(x):
            return np.concatenate([method.execute([torch.from_numpy(x[i:i + 1])])[0].numpy()
                                   for i in range(len(x))])
    else:
        from nasscale.latency.runtimes.onnxrt import session

        sess = session(out.path, threads=torch.get_num_threads())

        def int8(x):
            return sess.run(None, {"image": x})[0]

    a, n = held_out_top1(fp32, data, out.resolution, norm)
    b, _ = held_out_top1(int8, data, out.resolution, norm)
    return (f"held-out top-1 on {n} images of {data}: fp32 {100 * a:.2f}%, int8 "
            f"{100 * b:.2f}% ({100 * (b - a):+.2f} points)")
