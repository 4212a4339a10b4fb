"""The Storage SCP: C-ECHO, and C-STORE of CT images into the spool. pynetdicom runs each association in a
thread of its own, so the disk writes here never touch the event loop; `on_stored` is told of each instance.
An association is accepted only when called by this node's AE title and, with DICOM_ALLOWED_AES, from an allowed
calling AE title; `dicomnode.guard` bounds connections, time and instance size."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom.config
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt

from core.ports import PortTaken, is_taken
from dicomnode.contexts import supported_contexts
from dicomnode.guard import (
    ACSE_TIMEOUT_S, MAX_ASSOCIATIONS, MAX_PDU_BYTES, NETWORK_TIMEOUT_S, GuardedServer, InstanceCap,
)
from dicomnode.spool import Spool, SpooledSeries, SpoolFull

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC210  # the dataset could not be decoded
MISSING_ATTRIBUTES = 0xC211  # a UID or the pixel data is missing or short
PROCESSING_FAILURE = 0x0110
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Rows", "Columns", "PixelData")


@dataclass(frozen=True, slots=True)
class ScpConfig:
    ae_title: str
    host: str
    port: int
    allowed_aes: frozenset[str]  # empty: any calling AE title
    max_instance_bytes: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None


def problem_with(dataset: Dataset, is_compressed: bool) -> str | None:
    """Why an instance cannot be analysed (a missing UID, no or short pixel data), or None."""
    missing = [keyword for keyword in REQUIRED if keyword not in dataset]
    if missing:
        return f"missing {', '.join(missing)}"
    if not is_compressed:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        expected = dataset.Rows * dataset.Columns * (dataset.get("BitsAllocated", 16) // 8) * frames \
            * dataset.get("SamplesPerPixel", 1)
        if len(dataset.PixelData) < expected:
            return f"pixel data holds {len(dataset.PixelData)} bytes, {expected} expected"
    return None


class StorageScp:
    def __init__(
        self, config: ScpConfig, spool: Spool, on_stored: Callable[[SpooledSeries], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._spool = spool
        self._on_stored = on_stored
        self._clock = clock
        self._server: GuardedServer | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when configured with a free one)."""
        assert self._server is not None
        return self._server.server_address[1]

    def start(self) -> None:
        config = self._config
        keep_values_out_of_logs()
        ae = AE(ae_title=config.ae_title)
        ae.supported_contexts = supported_contexts()
        ae.require_called_aet = True
        ae.require_calling_aet = sorted(config.allowed_aes)
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.maximum_pdu_size = MAX_PDU_BYTES
        ae.acse_timeout = ACSE_TIMEOUT_S
        ae.network_timeout = NETWORK_TIMEOUT_S
        if not config.allowed_aes and config.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("DICOM node on %s:%d accepts any calling AE title; set DICOM_ALLOWED_AES",
                        config.host, config.port)
        handlers = [(evt.EVT_C_ECHO, self._echo), (evt.EVT_C_STORE, self._store), (evt.EVT_REJECTED, self._rejected),
                    *InstanceCap(config.max_instance_bytes).handlers()]
        try:
            server = ae.make_server((config.host, config.port), ssl_context=self._tls(), evt_handlers=handlers,
                                    server_class=GuardedServer)
        except OSError as error:
            if is_taken(error):
                raise PortTaken(
                    f"Port {config.port} on {config.host} is already taken, so the DICOM node cannot start; another "
                    f"DICOM node may be running there. Set DICOM_PORT to a free port (DICOM_PORT=0 runs without "
                    f"the node)."
                ) from None
            raise
        threading.Thread(target=server.serve_forever, name="hemowatch-dicom-accept", daemon=True).start()
        self._server = server
        log.info("DICOM node %s listening on %s:%d", config.ae_title, config.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _tls(self) -> ssl.SSLContext | None:
        config = self._config
        if config.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=config.tls_ca)
        return context

    def _echo(self, event: evt.Event) -> int:
        return SUCCESS

    def _rejected(self, event: evt.Event) -> None:
        """Log why an association was refused (pynetdicom tells the peer, in DICOM's terms, but not us)."""
        request = event.assoc.requestor.primitive
        calling, called = request.calling_ae_title.strip(), request.called_ae_title.strip()
        if called != self._config.ae_title:
            reason = f"it called AE title {called!r}, and this node is {self._config.ae_title!r}"
        elif self._config.allowed_aes and calling not in self._config.allowed_aes:
            reason = "its calling AE title is not in DICOM_ALLOWED_AES"
        else:
            reason = f"all {MAX_ASSOCIATIONS} association slots are taken"
        log.warning("association from %s at %s refused: %s", calling, event.assoc.requestor.address, reason)

    def _store(self, event: evt.Event) -> int:
        """Answer success only once the instance is durably in the spool."""
        calling = event.assoc.requestor.ae_title.strip()
        if event.assoc.is_aborted:  # the instance outgrew DICOM_MAX_INSTANCE_MB as it arrived (`InstanceCap`)
            return OUT_OF_RESOURCES
        try:
            dataset = event.dataset
        except Exception as error:  # truncated or garbled: pydicom's error names what it could not read
            log.warning("instance from %s could not be decoded: %s", calling, type(error).__name__)
            return CANNOT_UNDERSTAND
        problem = problem_with(dataset, event.context.transfer_syntax.is_compressed)
        if problem is not None:
            log.warning("instance from %s refused: %s", calling, problem)
            return MISSING_ATTRIBUTES
        try:
            spooled = self._spool.write(dataset, event.file_meta, calling, self._clock())
        except SpoolFull as full:
            log.warning("instance from %s refused, out of resources: %s", calling, full)
            return OUT_OF_RESOURCES
        except OSError as error:
            log.error("could not spool an instance from %s: %s", calling, error)
            return OUT_OF_RESOURCES
        except Exception:
            log.exception("could not spool an instance from %s", calling)
            return PROCESSING_FAILURE
        self._on_stored(spooled)
        return SUCCESS


def keep_values_out_of_logs() -> None:
    """pydicom and pynetdicom quote values they find odd (a UID with a NUL byte, a name in unexpected characters)
    in warnings and log lines, and pynetdicom's standard handlers log every message's UIDs at debug level. Values
    never leave the node, so it asks them to check and log no values (for this process: the node's)."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom.utils").setLevel(logging.CRITICAL)  # "Non-conformant ... value '<the UID>'"
