"""How much input one analysis accepts: the defences against oversized uploads, image bombs and ZIP bombs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Caps checked before any large allocation; each one exceeded becomes an `InputError`."""

    max_upload_bytes: int = 100 * 1024 * 1024
    max_slices: int = 600
    max_image_pixels: int = 50_000_000  # one picture or DICOM frame: a 48-megapixel phone photo fits
    max_scan_pixels: int = 256 * 2**20  # all slices of one upload together: 1,024 slices of 512 × 512 (512 MB)
    max_uncompressed_bytes: int = 1024 * 1024 * 1024  # all members of one ZIP together
    max_compression_ratio: float = 200.0  # DICOM compresses about 2-10x; bombs reach 1000x and more
    max_files: int = 5000  # members of a ZIP or files of a folder
