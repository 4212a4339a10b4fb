"""A local Bot API server: the Telegram HTTP protocol on a loopback port, users played by code.

Part of the product (`hemowatch demo` runs the real bot against it, with a web page playing the users) and
used by the tests and benchmarks. It imports none of HemoWatch's packages.
"""

from localbotapi.files import StoredFile
from localbotapi.markup import plain_text
from localbotapi.protocol import JSON, ApiCall, ApiError
from localbotapi.server import BotApiServer

__all__ = ["JSON", "ApiCall", "ApiError", "BotApiServer", "StoredFile", "plain_text"]
