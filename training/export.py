"""The shipped ONNX graphs: calibrated probability, class-activation map and type probabilities per slice,
in float32 and as an 8-bit statically quantized copy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from inference.preprocess import INPUT_SIZE
from training.evaluation import PlattScaling
from training.network import HaemorrhageNet, mirror_averaged

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("probability", "cam", "types")
CAM_SIDE = INPUT_SIZE // 32  # the network downsamples five times
IDENTITY = PlattScaling(slope=1.0, intercept=0.0)
CALIBRATION_BATCH = 16


class CalibratedNet(nn.Module):
    """`image` (N, 3, S, S) -> `probability` (N,) calibrated, `cam` (N, S/32, S/32) raw haemorrhage evidence,
    `types` (N, T) probability of each haemorrhage type; all averaged over the slice and its left-right
    mirror."""

    def __init__(self, net: HaemorrhageNet, calibration: PlattScaling) -> None:
        super().__init__()
        self.net = net.eval()
        self.register_buffer("slope", torch.tensor(calibration.slope, dtype=torch.float32))
        self.register_buffer("intercept", torch.tensor(calibration.intercept, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, cam = mirror_averaged(self.net, image)
        return torch.sigmoid(self.slope * logits[:, 0] + self.intercept), cam, torch.sigmoid(logits[:, 1:])


def _declare_fixed_sizes(path: Path, types: int) -> None:
    """Write the map's side and the type count into the declared output shapes, which the exporter leaves
    symbolic once the graph holds two passes."""
    model = onnx.load(str(path))
    outputs = {output.name: output for output in model.graph.output}
    for dim in outputs["cam"].type.tensor_type.shape.dim[1:]:
        dim.dim_value = CAM_SIDE
    outputs["types"].type.tensor_type.shape.dim[1].dim_value = types
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_onnx(net: HaemorrhageNet, calibration: PlattScaling, path: Path) -> float:
    """Write the float32 ONNX model and return the largest difference between onnxruntime's and torch's
    outputs."""
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
        dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
        opset_version=OPSET,
        dynamo=False,
    )
    _declare_fixed_sizes(path, types=net._fc.out_features - 1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = [output.numpy() for output in model(example)]
    actual = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.numpy()})
    return float(max(np.abs(want - got).max() for want, got in zip(expected, actual, strict=True)))


class _Batches(CalibrationDataReader):
    def __init__(self, images: np.ndarray) -> None:
        starts = range(0, len(images), CALIBRATION_BATCH)
        self._batches: Iterator[np.ndarray] = (images[start : start + CALIBRATION_BATCH] for start in starts)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize(float_path: Path, path: Path, calibration_images: np.ndarray) -> None:
    """An 8-bit copy of the float32 model: weights per output channel, activations with ranges measured on
    `calibration_images` (N, 3, S, S) from the training slices."""
    prepared = path.with_suffix(".prepared.onnx")
    quant_pre_process(str(float_path), str(prepared))
    try:
        quantize_static(
            str(prepared),
            str(path),
            _Batches(calibration_images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)
