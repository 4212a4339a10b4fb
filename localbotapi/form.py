"""Request parameters as python-telegram-bot sends them: a JSON body, or form fields and multipart uploads."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from localbotapi.protocol import JSON

STRING_FIELDS = {"text", "caption", "parse_mode", "callback_query_id", "file_id", "action", "photo", "document",
                 "url", "secret_token"}


def _decode(name: str, value: str) -> Any:
    """Form fields arrive as strings; python-telegram-bot JSON-encodes every non-string value."""
    if name in STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def read_params(request: web.Request) -> tuple[JSON, dict[str, bytes]]:
    """The call's parameters and its uploaded files by field name."""
    if request.content_type == "application/json":
        return await request.json(), {}
    params: JSON = {name: _decode(name, value) for name, value in request.query.items()}
    files: dict[str, bytes] = {}
    for name, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            files[name] = value.file.read()
        else:
            params[name] = _decode(name, str(value))
    return params, files
