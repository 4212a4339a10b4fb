"""What keeps idle connections, one busy sender or one huge instance from locking scanners out of the node.

pynetdicom gives every accepted TCP connection a thread that holds one of the node's association slots, from the
moment it is accepted, whether or not the peer ever asks for an association. So the node has many slots, a peer
has a few seconds to ask for an association and a bounded time to stay silent in one, and one address may hold
only so many connections (the others are closed as soon as they are accepted). A TLS handshake is done in the
connection's own thread, never in the one that accepts connections, so a silent peer cannot stall that one.
An instance is held in memory only while it arrives: it is counted fragment by fragment, and the association of
one larger than the cap is aborted there.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from socketserver import BaseServer
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

MAX_ASSOCIATIONS = 64  # slots: far more than the scanners and PACS of a site push at once
MAX_PER_PEER = 16  # connections one address may hold: a PACS pushing in parallel, and some to spare
ACSE_TIMEOUT_S = 5.0  # from the TCP connection to the association request
NETWORK_TIMEOUT_S = 30.0  # silence in an association, or inside one PDU, before it is ended
MAX_PDU_BYTES = 1 << 20  # the largest PDU the node asks peers to send

_P_DATA_TF = 0x04
_PDU_HEADER = 6  # type, reserved, length
_PDV_HEADER = 6  # item length (4), presentation context (1), message control header (1)
_COMMAND, _LAST = 0x01, 0x02  # message control header bits


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a cap per peer address and the TLS handshake out of the accepting thread.
    Started with `serve_forever` in a thread of its own (not by `AE.start_server`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: list[tuple[str, socket.socket]] = []  # touched only by the accepting thread
        self._crowded: set[str] = set()  # addresses refused since they were last accepted (logged once)

    def get_request(self) -> tuple[socket.socket, Any]:
        client, address = self.socket.accept()
        client.settimeout(NETWORK_TIMEOUT_S)  # a peer that stops inside a PDU or a handshake is let go
        if self.ssl_context is not None:  # the handshake happens on the connection's first read
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = str(client_address[0])
        self._open = [(peer, client) for peer, client in self._open if client.fileno() != -1]
        held = sum(peer == host for peer, _ in self._open)
        if held >= MAX_PER_PEER:
            if host not in self._crowded:
                log.warning("connections from %s refused: it holds %d, at most %d are taken from one address",
                            host, held, MAX_PER_PEER)
                self._crowded.add(host)
            return False
        self._crowded.discard(host)
        self._open.append((host, request))
        return True

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket; associations under way end by themselves."""
        BaseServer.shutdown(self)
        self.server_close()


class InstanceCap:
    """Counts the data set of the C-STORE arriving on each association, P-DATA PDU by PDU; an association whose
    instance grows past `max_bytes` is aborted before more of it is held."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._received: dict[Association, int] = {}
        self._lock = threading.Lock()

    def handlers(self) -> list[tuple[evt.EventType, Any]]:
        return [(evt.EVT_DATA_RECV, self._on_data), (evt.EVT_CONN_CLOSE, self._on_closed)]

    def _on_data(self, event: evt.Event) -> None:
        data = event.data
        if data[0] != _P_DATA_TF or event.assoc.is_aborted:
            return
        with self._lock:
            received = self._received.get(event.assoc, 0)
        offset, too_large = _PDU_HEADER, False
        while offset + _PDV_HEADER <= len(data):
            (length,) = struct.unpack_from(">L", data, offset)
            control = data[offset + 5]
            if not control & _COMMAND:
                received += length - 2
                too_large = too_large or received > self.max_bytes
                if control & _LAST:  # the instance is complete
                    received = 0
            offset += 4 + length
        with self._lock:
            self._received[event.assoc] = received
        if too_large:
            requestor = event.assoc.requestor
            log.warning("instance from %s at %s refused: larger than DICOM_MAX_INSTANCE_MB (%.0f MB); association "
                        "aborted", requestor.ae_title, requestor.address, self.max_bytes / 2**20)
            event.assoc.abort(block=False)

    def _on_closed(self, event: evt.Event) -> None:
        with self._lock:
            self._received.pop(event.assoc, None)
