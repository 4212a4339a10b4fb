"""A scanner for tests and benchmarks: pynetdicom's SCU pushing files to a DICOM node."""

from __future__ import annotations

from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

SCANNER = "CTSCANNER"


def push(port: int, paths: list[Path], calling: str = SCANNER, called: str = "HEMOWATCH",
         sop_class: str = CTImageStorage) -> list[int]:
    """Send `paths` over one association to 127.0.0.1:`port`; the status of each C-STORE."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, f"{called} on port {port} did not accept the association"
    try:
        return [assoc.send_c_store(path).Status for path in paths]
    finally:
        assoc.release()
