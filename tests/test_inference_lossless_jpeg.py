"""JPEG Lossless series, compressed by Debian's dcmtk (`dcmcjpeg`), read through the libjpeg-turbo plugin: the same
Hounsfield units as the uncompressed files and as pydicom's default plugin, damaged streams a plain error."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLossless, JPEGLosslessSV1
from test_inference_dicom import dicom_bytes, head_phantom

from inference.dicom import read_series
from inference.errors import InputError
from inference.limits import Limits
from inference.lossless_jpeg import PLUGIN, decode_frame

pytestmark = pytest.mark.skipif(
    shutil.which("dcmcjpeg") is None, reason="dcmtk is not installed (apt-get install dcmtk)"
)
PROCESS_14 = {"+e1": JPEGLosslessSV1, "+el": JPEGLossless}  # dcmcjpeg option -> transfer syntax it writes


def compressed(source: Path, option: str) -> bytes:
    target = source.with_name(f"{source.stem}{option}.dcm")
    subprocess.run(["dcmcjpeg", option, str(source), str(target)], check=True, capture_output=True)
    assert dcmread(target).file_meta.TransferSyntaxUID == PROCESS_14[option]
    return target.read_bytes()


@pytest.mark.parametrize("option", sorted(PROCESS_14))
def test_a_real_series_compressed_by_dcmtk_reads_as_the_uncompressed_one(
    option: str, ge_series_dir: Path, tmp_path: Path
) -> None:
    sources = sorted(ge_series_dir.glob("*.dcm"))[10:14]
    copies = [Path(shutil.copy(path, tmp_path)) for path in sources]
    (plain,) = read_series([path.read_bytes() for path in sources], Limits(), strict=False)
    (lossless,) = read_series([compressed(path, option) for path in copies], Limits(), strict=False, threads=2)
    assert len(lossless.slices) == len(sources)
    for left, right in zip(plain.slices, lossless.slices):
        np.testing.assert_array_equal(left.hu, right.hu)


@pytest.mark.parametrize("signed", [False, True])
def test_the_plugin_decodes_what_pydicoms_default_plugin_decodes(signed: bool, tmp_path: Path) -> None:
    hu = head_phantom(128)
    hu[60:70, 60:70] = 75.0  # a bleed-like patch
    source = tmp_path / "slice.dcm"
    source.write_bytes(dicom_bytes(hu, intercept=0.0 if signed else -1024.0, signed=signed))
    data = compressed(source, "+e1")
    ds = dcmread(io.BytesIO(data))
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    assert PLUGIN in decoder.available_plugins
    ours = decoder.as_array(ds, decoding_plugin=PLUGIN)[0]
    default = decoder.as_array(ds, decoding_plugin="pylibjpeg")[0]
    np.testing.assert_array_equal(ours, default)
    np.testing.assert_array_equal(decode_frame(ds, None), default)
    (series,) = read_series([data], Limits(), strict=True)
    np.testing.assert_array_equal(series.slices[0].hu, np.rint(hu).astype(np.int16))


@pytest.mark.parametrize(("signed", "bits"), [(False, 12), (True, 12), (False, 16), (True, 16)])
def test_every_value_of_12_and_16_bit_slices_survives(signed: bool, bits: int, tmp_path: Path) -> None:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    stored = np.random.default_rng(bits).integers(low, high, (64, 64), endpoint=True)
    stored = stored.astype(np.int16 if signed else np.uint16)
    ds = dcmread(io.BytesIO(dicom_bytes(np.zeros((64, 64)))))
    ds.set_pixel_data(stored, "MONOCHROME2", bits)
    source = tmp_path / "slice.dcm"
    ds.save_as(source, enforce_file_format=True)
    lossless = dcmread(io.BytesIO(compressed(source, "+e1")))
    decoder = get_decoder(lossless.file_meta.TransferSyntaxUID)
    np.testing.assert_array_equal(decoder.as_array(lossless, decoding_plugin=PLUGIN)[0], stored)
    np.testing.assert_array_equal(decoder.as_array(lossless, decoding_plugin="pylibjpeg")[0], stored)
    direct = decode_frame(lossless, None)
    assert direct.dtype == stored.dtype
    np.testing.assert_array_equal(direct, stored)


def test_a_damaged_lossless_stream_is_a_plain_input_error(tmp_path: Path) -> None:
    source = tmp_path / "slice.dcm"
    source.write_bytes(dicom_bytes(head_phantom(128)))
    data = bytearray(compressed(source, "+e1"))
    start = data.rindex(b"\xff\xd8")  # the frame's start of image, then its frame header and Huffman table
    data[start : start + 64] = b"\x00" * 64
    with pytest.raises(InputError, match="could not be decoded"):
        read_series([bytes(data)], Limits(), strict=True)
