"""C-ECHO to another DICOM node, to check a link (`hemowatch dicom echo AE@HOST:PORT`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pynetdicom import AE
from pynetdicom.sop_class import Verification

_ADDRESS = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})")


@dataclass(frozen=True, slots=True)
class NodeAddress:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_address(text: str) -> NodeAddress:
    """`AE@HOST:PORT` (an IPv6 host in brackets); ValueError naming the expected form otherwise."""
    match = _ADDRESS.fullmatch(text.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{text!r} is not AE@HOST:PORT (for example PACS@10.0.0.5:104)")
    return NodeAddress(match["ae"].strip(), match["host"].strip("[]"), int(match["port"]))


def echo(calling_ae: str, target: NodeAddress, timeout_s: float = 10.0) -> str | None:
    """None when the node answered the C-ECHO with success, else what went wrong, in one line."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    try:
        assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
    except OSError as error:  # the host name does not resolve, or the address is unusable
        return f"cannot reach {target.host}: {error.strerror or error}"
    if assoc.is_rejected:
        reason = assoc.acceptor.primitive.reason_str if assoc.acceptor.primitive is not None else "no reason given"
        return f"the association was rejected: {reason} (is the calling or called AE title right and allowed?)"
    if not assoc.is_established:
        return "no association: nothing accepted the connection, or the node did not answer in time or aborted"
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return "no answer to the C-ECHO"
    return None if status.Status == 0 else f"C-ECHO status 0x{status.Status:04X}"
