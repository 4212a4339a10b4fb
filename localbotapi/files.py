"""The files users and the bot send, kept in memory under Telegram-style file ids and paths; photos are
re-encoded as Telegram does."""

from __future__ import annotations

import hashlib
import io
import itertools
from dataclasses import dataclass
from typing import Any

from PIL import Image

from localbotapi.protocol import JSON, ApiError

CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses larger files on api.telegram.org
PHOTO_SIDES = (90, 320, 800, 1280)  # the PhotoSize variants Telegram keeps of a photo


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    width: int = 0  # photos only
    height: int = 0


def _photo_variants(data: bytes) -> list[tuple[bytes, int, int]]:
    """Re-encode a photo the way Telegram does: JPEG copies up to 1280 px on the long side."""
    with Image.open(io.BytesIO(data)) as image:
        original = image.convert("RGB")
    longest = max(original.size)
    sides = [side for side in PHOTO_SIDES if side < longest] + [min(longest, PHOTO_SIDES[-1])]
    variants = []
    for side in dict.fromkeys(sides):
        copy = original.copy()
        copy.thumbnail((side, side))
        buffer = io.BytesIO()
        copy.save(buffer, "JPEG", quality=87)
        variants.append((buffer.getvalue(), copy.width, copy.height))
    return variants


def photo_size(stored: StoredFile) -> JSON:
    return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
            "width": stored.width, "height": stored.height, "file_size": len(stored.data)}


class FileStore:
    def __init__(self) -> None:
        self.by_id: dict[str, StoredFile] = {}
        self._ids = itertools.count(1)

    def store(self, data: bytes, folder: str, extension: str, width: int = 0, height: int = 0) -> StoredFile:
        number = next(self._ids)
        stored = StoredFile(
            file_id=f"file-{number}", file_unique_id=hashlib.sha256(data).hexdigest()[:16],
            file_path=f"{folder}/file_{number}" + (f".{extension}" if extension else ""), data=data,
            width=width, height=height,
        )
        self.by_id[stored.file_id] = stored
        return stored

    def store_photo(self, image: bytes) -> list[JSON]:
        """The photo's `PhotoSize`s, smallest first."""
        return [photo_size(self.store(data, "photos", "jpg", width, height))
                for data, width, height in _photo_variants(image)]

    def known(self, file_id: Any) -> StoredFile:
        if file_id not in self.by_id:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return self.by_id[file_id]

    def at_path(self, path: str) -> StoredFile | None:
        return next((stored for stored in self.by_id.values() if stored.file_path == path), None)
