"""The shipped ONNX graph: calibrated probability and class-activation map from a prepared slice batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from inference.preprocess import INPUT_SIZE
from training.evaluation import PlattScaling
from training.network import HaemorrhageNet, mirror_averaged

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("probability", "cam")
CAM_SIDE = INPUT_SIZE // 32  # the network downsamples five times


class CalibratedNet(nn.Module):
    """`image` (N, 3, S, S) -> `probability` (N,) calibrated, `cam` (N, S/32, S/32) raw haemorrhage evidence,
    both averaged over the slice and its left-right mirror."""

    def __init__(self, net: HaemorrhageNet, calibration: PlattScaling) -> None:
        super().__init__()
        self.net = net.eval()
        self.register_buffer("slope", torch.tensor(calibration.slope, dtype=torch.float32))
        self.register_buffer("intercept", torch.tensor(calibration.intercept, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, cam = mirror_averaged(self.net, image)
        return torch.sigmoid(self.slope * logit + self.intercept), cam


def _declare_map_size(path: Path) -> None:
    """Write the map's fixed side into the declared `cam` shape, which the exporter leaves symbolic once the
    graph holds two passes."""
    model = onnx.load(str(path))
    (cam,) = [output for output in model.graph.output if output.name == "cam"]
    for dim in cam.type.tensor_type.shape.dim[1:]:
        dim.dim_value = CAM_SIDE
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_onnx(net: HaemorrhageNet, calibration: PlattScaling, path: Path) -> float:
    """Write the ONNX model and return the largest difference between onnxruntime's and torch's outputs."""
    model = CalibratedNet(net, calibration).eval()
    shape = (2, 3, INPUT_SIZE, INPUT_SIZE)
    example = torch.from_numpy(np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: {0: "batch"}, "probability": {0: "batch"}, "cam": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    _declare_map_size(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = [output.numpy() for output in model(example)]
    actual = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.numpy()})
    return float(max(np.abs(want - got).max() for want, got in zip(expected, actual, strict=True)))
