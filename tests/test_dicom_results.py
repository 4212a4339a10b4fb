"""Results back to PACS: a pynetdicom SCP in the test plays the PACS and receives each triaged series as a
Secondary Capture in the same study, also when it comes up only after the first try."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import SecondaryCaptureImageStorage
from stores import store_settings

from core.settings import DEFAULT_MODEL, Settings
from dicomnode.node import DicomNode
from dicomnode.results import SERIES_DESCRIPTION
from hemowatch.builders import analyzer_from_settings
from inference.model import ModelCard
from testsupport.broker import free_port
from testsupport.dicom import push
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(120)


class Pacs:
    """A Storage SCP that keeps what it is sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Dataset] = []
        self._lock = threading.Lock()
        self._server = None

    def start(self) -> None:
        ae = AE(ae_title="PACS")
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self._lock:
            self.received.append(dataset)
        return 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


async def test_the_triage_comes_back_to_pacs_as_a_secondary_capture_in_the_study_after_a_retry(
    database: Path | str, tmp_path: Path, ge_series_dir: Path
) -> None:
    pacs = Pacs(free_port())
    settings = Settings(_env_file=None, dicom_port=free_port(), dicom_series_idle_s=0.3, dicom_threshold=0.3,
                        dicom_result_destination=f"PACS@127.0.0.1:{pacs.port}", **store_settings(database, tmp_path))
    analyzer = analyzer_from_settings(settings, threshold=0.3)
    paths = sorted(ge_series_dir.glob("*.dcm"))
    try:
        async with DicomNode(settings, analyzer, result_retry_s=(0.5, 2.0, 20)) as node:
            assert await asyncio.to_thread(push, node.port, paths) == [0] * 28
            await asyncio.sleep(2.0)  # the PACS is down for the first try
            pacs.start()
            await eventually(lambda: pacs.received, 60, "the capture at the PACS")
        (capture,) = pacs.received
    finally:
        pacs.stop()
    original = dcmread(paths[0], stop_before_pixels=True)
    assert capture.SOPClassUID == SecondaryCaptureImageStorage
    assert capture.StudyInstanceUID == original.StudyInstanceUID
    assert capture.SeriesInstanceUID != original.SeriesInstanceUID
    assert capture.SeriesDescription == SERIES_DESCRIPTION and capture.BurnedInAnnotation == "YES"
    version = re.escape(ModelCard.beside(DEFAULT_MODEL).version)
    assert re.search(rf"haemorrhage suspected; probability \d+% \(threshold 30%\); no single region stands out on the "
                     rf"heat-map; model hemowatch-ich {version}\b",
                     capture.ImageComments)
    assert "Decision support, not a diagnosis." in capture.ImageComments
    assert capture.pixel_array.ndim == 3 and capture.pixel_array.shape[2] == 3
    assert not str(capture.PatientName) and not capture.PatientID
