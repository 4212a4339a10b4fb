"""The shipped ONNX graphs: calibrated probability, class-activation map, type probabilities and the pooled
features per slice, in float32 and as an 8-bit statically quantized copy."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from inference.preprocess import INPUT_SIZE
from training.evaluation import PlattScaling
from training.network import FEATURES, HaemorrhageNet, logits_and_map

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("probability", "cam", "types")
FEATURES_OUTPUT = "features"
CAM_SIDE = INPUT_SIZE // 32  # the network downsamples five times
IDENTITY = PlattScaling(slope=1.0, intercept=0.0)
CALIBRATION_BATCH = 16


class CalibratedNet(nn.Module):
    """`image` (N, 3, S, S) -> `probability` (N,) calibrated, `cam` (N, S/32, S/32) raw haemorrhage evidence,
    `types` (N, T) probability of each haemorrhage type."""

    def __init__(self, net: HaemorrhageNet, calibration: PlattScaling) -> None:
        super().__init__()
        self.net = net.eval()
        self.register_buffer("slope", torch.tensor(calibration.slope, dtype=torch.float32))
        self.register_buffer("intercept", torch.tensor(calibration.intercept, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, cam = logits_and_map(self.net, image)
        return torch.sigmoid(self.slope * logits[:, 0] + self.intercept), cam, torch.sigmoid(logits[:, 1:])


def _folded(path: Path) -> onnx.ModelProto:
    """The graph with its constant subgraphs computed, by onnxruntime's basic optimisations (standard ONNX
    operators only)."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = str(Path(folder) / "folded.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def _fuse_padding(graph: onnx.GraphProto) -> None:
    """Move each zero `Pad` that feeds a single `Conv` into that convolution's own (possibly asymmetric) pads.

    The stride-2 convolutions pad like TensorFlow, which PyTorch exports as a separate `Pad`: a copy of the
    feature map each, and in the 8-bit graph a dequantize-quantize pair around it.
    """
    initializers = {item.name: item for item in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    for pad in [node for node in graph.node if node.op_type == "Pad"]:
        users = consumers[pad.output[0]]
        mode = next((attribute.s for attribute in pad.attribute if attribute.name == "mode"), b"constant")
        value = pad.input[2] if len(pad.input) > 2 else ""
        if (
            len(users) != 1 or users[0].op_type != "Conv" or mode != b"constant" or pad.input[1] not in initializers
            or (value and (value not in initializers or numpy_helper.to_array(initializers[value]).any()))
        ):
            continue
        amounts = numpy_helper.to_array(initializers[pad.input[1]])
        rank = len(amounts) // 2
        if amounts[:2].any() or amounts[rank : rank + 2].any():
            continue  # pads the batch or channels: not a convolution's padding
        conv = users[0]
        attributes = {attribute.name: attribute for attribute in conv.attribute}
        if attributes.get("auto_pad", helper.make_attribute("auto_pad", b"NOTSET")).s != b"NOTSET":
            continue
        spatial = [*amounts[2:rank], *amounts[rank + 2 :]]
        current = list(attributes["pads"].ints) if "pads" in attributes else [0] * len(spatial)
        fused = [int(before) + int(added) for before, added in zip(current, spatial, strict=True)]
        if "pads" in attributes:
            conv.attribute.remove(attributes["pads"])
        conv.attribute.append(helper.make_attribute("pads", fused))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    for item in [item for item in graph.initializer if item.name not in used]:
        graph.initializer.remove(item)


def _head(graph: onnx.GraphProto) -> onnx.NodeProto:
    """The final layer (haemorrhage logit, then the type logits): the graph's one Gemm."""
    heads = [node for node in graph.node if node.op_type == "Gemm"]
    if len(heads) != 1:
        raise ValueError(f"expected one final Gemm, found {len(heads)}")
    return heads[0]


def haemorrhage_head(float_path: Path) -> tuple[np.ndarray, float]:
    """The haemorrhage row of the float32 graph's final layer, `(weights (1280,), bias)`: the raw haemorrhage
    logit is `features @ weights + bias`."""
    graph = onnx.load(str(float_path)).graph
    head = _head(graph)
    initializers = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    weights = initializers[head.input[1]]
    transposed = any(attribute.name == "transB" and attribute.i for attribute in head.attribute)
    return (weights[0] if transposed else weights[:, 0]), float(initializers[head.input[2]][0])


def expose_features(graph: onnx.GraphProto) -> None:
    """Name the pooled vector the final layer reads `features` and add it to the graph's outputs, (N, 1280)
    float32, without touching any computation. In the 8-bit graph that vector is the dequantized copy the head
    reads. Does nothing to a graph that already has the output."""
    pooled = _head(graph).input[0]
    outputs = {output.name for output in graph.output}
    if pooled == FEATURES_OUTPUT and FEATURES_OUTPUT in outputs:
        return
    if FEATURES_OUTPUT in outputs:
        raise ValueError(f"the graph's `{FEATURES_OUTPUT}` output is not what its final layer reads")
    for node in graph.node:
        node.input[:] = [FEATURES_OUTPUT if name == pooled else name for name in node.input]
        node.output[:] = [FEATURES_OUTPUT if name == pooled else name for name in node.output]
    for info in [info for info in graph.value_info if info.name == pooled]:
        graph.value_info.remove(info)
    batch = graph.output[0].type.tensor_type.shape.dim[0].dim_param or "batch"
    graph.output.append(helper.make_tensor_value_info(FEATURES_OUTPUT, onnx.TensorProto.FLOAT, [batch, FEATURES]))


def add_features_output(path: Path) -> None:
    """Rewrite the ONNX file at `path` with a `features` output (see `expose_features`)."""
    model = onnx.load(str(path))
    expose_features(model.graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _finish(path: Path, types: int) -> None:
    """Fold constants and padding into the convolutions, write the map's side and the type count into the
    declared output shapes, which the exporter leaves symbolic once the graph holds two passes, and add the
    `features` output."""
    model = _folded(path)
    _fuse_padding(model.graph)
    domains = {node.domain for node in model.graph.node} | {""}
    imports = [item for item in model.opset_import if item.domain in domains]  # onnxruntime lists all it knows
    del model.opset_import[:]
    model.opset_import.extend(imports)
    outputs = {output.name: output for output in model.graph.output}
    for dim in outputs["cam"].type.tensor_type.shape.dim[1:]:
        dim.dim_value = CAM_SIDE
    outputs["types"].type.tensor_type.shape.dim[1].dim_value = types
    expose_features(model.graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_onnx(net: HaemorrhageNet, calibration: PlattScaling, path: Path) -> float:
    """Write the float32 ONNX model and return the largest difference between onnxruntime's and torch's
    outputs (the features among them)."""
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
    _finish(path, types=net._fc.out_features - 1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = [output.numpy() for output in (*model(example), net.pooled(net.features(example)))]
    actual = session.run([*OUTPUT_NAMES, FEATURES_OUTPUT], {INPUT_NAME: example.numpy()})
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
    `calibration_images` (N, 3, S, S) from the training slices.

    The output sigmoids stay in float: quantized, a probability would take 256 values and every slice below
    about 0.2% would read as exactly 0, losing the log-odds that study aggregation and calibration use. The
    `features` output is the dequantized 8-bit pooled vector the final layer reads, as in float.
    """
    prepared = path.with_suffix(".prepared.onnx")
    quant_pre_process(str(float_path), str(prepared))
    try:
        sigmoids = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Sigmoid"]
        quantize_static(
            str(prepared),
            str(path),
            _Batches(calibration_images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=sigmoids,
        )
    finally:
        prepared.unlink(missing_ok=True)
    add_features_output(path)  # the quantizer already feeds the head from the output; this checks it does
