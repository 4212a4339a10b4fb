"""What a doctor sent as a scan, judged from Telegram's description before anything is downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from telegram import Message

from bot import texts
from core.settings import Settings

CLOUD_API_URL = "https://api.telegram.org"
CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the largest file a bot may download from Telegram's own servers
SCAN_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".zip"}
SCAN_MIME_TYPES = {
    "image/png", "image/jpeg", "application/dicom", "application/zip", "application/x-zip-compressed",
}


@dataclass(frozen=True, slots=True)
class Upload:
    file_id: str
    filename: str  # passed to the analysis only; never shown, it may name the patient
    mime_type: str | None
    size: int | None

    @classmethod
    def of(cls, message: Message) -> Upload | None:
        """The photo (its largest size) or document of `message`, if any."""
        if message.photo:
            largest = message.photo[-1]
            return cls(largest.file_id, "photo.jpg", "image/jpeg", largest.file_size)
        document = message.document
        if document is None:
            return None
        return cls(document.file_id, document.file_name or "", document.mime_type, document.file_size)

    def looks_like_a_scan(self) -> bool:
        """PNG, JPEG, DICOM or ZIP by name or type.

        DICOM files are often named without a suffix or by their UID ("1.2.840.113619.2.55"), so those pass
        too; the analysis then checks the content.
        """
        suffix = PurePosixPath(self.filename.lower()).suffix
        return suffix in SCAN_SUFFIXES or suffix[1:].isdigit() or not suffix or self.mime_type in SCAN_MIME_TYPES


def refusal(upload: Upload, settings: Settings) -> str | None:
    """Why this upload will not be analysed, in plain words, or None when it may be."""
    if not upload.looks_like_a_scan():
        return texts.SCAN_WRONG_FORMAT
    if upload.size is None:
        return None
    if upload.size > settings.max_upload_bytes:
        return texts.scan_too_big(upload.size, settings.max_upload_bytes)
    if settings.telegram_api_url.rstrip("/") == CLOUD_API_URL and upload.size > CLOUD_DOWNLOAD_LIMIT:
        return texts.scan_too_big_for_telegram(CLOUD_DOWNLOAD_LIMIT)
    return None
