"""Scan triage end to end: the real bot, the local Bot API server, a real SQLite file and the shipped ONNX model."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botworld import BotWorld, running_bot
from test_inference_dicom import corrupt_position, dicom_bytes, head_phantom

from bot import texts
from bot.rate_limit import RateLimit
from bot.scan_upload import CLOUD_API_URL, Upload, refusal
from bot.scans import DESK_KEY
from core.roles import Role
from core.settings import Settings
from hemowatch.builders import analyzer_from_settings
from inference.analyzer import Analyzer
from inference.percent import percent
from localbotapi import JSON, BotApiServer
from store.scans import scans_of

DOCTOR, CAREGIVER, STRANGER = 10, 20, 40
PATIENT = "bed-1"
SLICE = "001.png"  # a haemorrhage slice of the reference set
TIMEOUT = 120  # a whole series on two busy cores


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return analyzer_from_settings(Settings(_env_file=None))


@pytest.fixture
async def world(bot_api: BotApiServer, database: Path | str, tmp_path: Path, analyzer: Analyzer,
                request: pytest.FixtureRequest) -> AsyncIterator[BotWorld]:
    overrides = getattr(request, "param", {})
    async with running_bot(bot_api, database, tmp_path, **overrides) as world:
        world.application.bot_data["shared"].analyzer = analyzer
        world.add_patient(PATIENT)
        world.add_person(DOCTOR, Role.DOCTOR)
        world.add_person(CAREGIVER, Role.CAREGIVER, PATIENT)
        yield world


def series_zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.glob("*.dcm")):
            archive.write(path, f"series/{path.name}")
    return buffer.getvalue()


def is_verdict(message: JSON) -> bool:
    return "Decision support only" in message.get("text", "")


async def verdict_and_heat_map(api: BotApiServer, sent: JSON) -> tuple[JSON, JSON]:
    verdict = await api.wait_for_message(DOCTOR, is_verdict, timeout=TIMEOUT, after=sent)
    heat_map = await api.wait_for_message(DOCTOR, lambda m: "photo" in m, after=sent)
    return verdict, heat_map


async def test_a_png_slice_gets_verdict_heat_map_and_audit_row(
    world: BotWorld, head_ct_dir: Path, analyzer: Analyzer
) -> None:
    model = analyzer.model_info
    data = (head_ct_dir / "images" / SLICE).read_bytes()
    sent = world.api.send_document(DOCTOR, data, "Jane Doe 1970-01-01.png", "image/png")
    first = await world.api.wait_for_message(DOCTOR, after=sent)
    assert first["text"] == texts.ANALYSING
    verdict, heat_map = await verdict_and_heat_map(world.api, sent)
    assert verdict["message_id"] == first["message_id"]  # the same message, edited
    text = verdict["text"]
    assert text.splitlines()[:2] == [texts.VERDICTS["hemorrhage"], "Scan: picture (PNG)"]
    assert "Probability of haemorrhage 99% " in text  # the shipped model's figure for this labelled slice
    assert f"(threshold {percent(model.threshold)})" in text and f"Model {model.name} {model.version}." in text
    assert texts.NO_IDENTIFIABLE_IMAGES in text
    assert "Jane" not in text and "Jane" not in heat_map.get("caption", "")
    assert heat_map["caption"].startswith("Heat-map on the image")
    progress = [m["text"] for m in world.api.history(DOCTOR) if m["message_id"] == first["message_id"]]
    assert any(step.startswith("Analysing… ") for step in progress[1:-1])

    [audit] = scans_of(world.db, DOCTOR)
    assert audit.sha256 == hashlib.sha256(data).hexdigest()
    assert texts.VERDICTS[audit.verdict] == text.splitlines()[0]
    assert f"Probability of haemorrhage {percent(audit.probability)} " in text
    assert (audit.model_version, audit.n_slices, audit.n_assessable) == (model.version, 1, 1)


async def test_a_phone_photo_is_analysed_as_telegram_recompressed_it(world: BotWorld, head_ct_dir: Path) -> None:
    sent = world.api.send_photo(DOCTOR, (head_ct_dir / "images" / SLICE).read_bytes())
    verdict, _ = await verdict_and_heat_map(world.api, sent)
    assert "picture (JPEG)" in verdict["text"]
    [audit] = scans_of(world.db, DOCTOR)
    assert audit.sha256 == hashlib.sha256(world.api.file_bytes(sent["photo"][-1]["file_id"])).hexdigest()


@pytest.mark.parametrize("world", [{"scan_concurrency": 1}], indirect=True)
async def test_a_dicom_series_zip_and_a_second_scan_wait_their_turn(
    world: BotWorld, ge_series_dir: Path, head_ct_dir: Path
) -> None:
    series = world.api.send_document(DOCTOR, series_zip(ge_series_dir), "series.zip", "application/zip")
    await world.api.wait_for_message(DOCTOR, lambda m: m["text"].startswith("Analysing… Read"), TIMEOUT, series)
    verdict, heat_map = await verdict_and_heat_map(world.api, series)
    assert re.search(r"Scan: series .*28 slices", verdict["text"])
    assert "Most suspicious: slice 12 of 28 (70%)." in verdict["text"]
    assert "19 of 28 slices could be assessed." in verdict["text"]
    assert re.match(r"Heat-map on slice 12 of 28, .*: no single region stands out, so nothing is coloured\.$",
                    heat_map["caption"])

    slots: asyncio.Semaphore = world.application.bot_data[DESK_KEY].slots
    async with slots:  # an analysis of someone else's holds the only slot
        photo = world.api.send_photo(DOCTOR, (head_ct_dir / "images" / SLICE).read_bytes())
        await world.api.wait_for_message(DOCTOR, lambda m: m.get("text") == texts.WAITING_FOR_SLOT, after=photo)
    await verdict_and_heat_map(world.api, photo)
    zip_audit, photo_audit = scans_of(world.db, DOCTOR)
    assert (zip_audit.n_slices, photo_audit.n_slices) == (28, 1)
    assert 0 < zip_audit.n_assessable < 28  # the skull base and vertex slices are left out


async def test_files_that_are_not_scans_get_a_plain_answer(world: BotWorld) -> None:
    sent = world.api.send_document(DOCTOR, b"BP 120/80, feeling fine", "notes.txt", "text/plain")
    reply = await world.api.wait_for_message(DOCTOR, after=sent)
    assert reply["text"] == texts.SCAN_WRONG_FORMAT
    assert not world.api.calls_to("getFile") and not scans_of(world.db, DOCTOR)


async def test_unreadable_scans_say_why(world: BotWorld) -> None:
    sent = world.api.send_document(DOCTOR, b"\0" * 4096, "slice.dcm", "application/dicom")
    reply = await world.api.wait_for_message(DOCTOR, lambda m: m["text"] != texts.ANALYSING, after=sent)
    assert reply["text"].startswith("I could not analyse this scan. ")
    assert not scans_of(world.db, DOCTOR)


async def test_a_dicom_with_a_corrupt_element_names_it(world: BotWorld) -> None:
    data = corrupt_position(dicom_bytes(head_phantom(64), z=12.5))
    sent = world.api.send_document(DOCTOR, data, "slice.dcm", "application/dicom")
    reply = await world.api.wait_for_message(DOCTOR, lambda m: m["text"] != texts.ANALYSING, after=sent)
    assert reply["text"].startswith("I could not analyse this scan. ")
    assert "ImagePositionPatient (0020,0032)" in reply["text"]


@pytest.mark.parametrize("world", [{"max_upload_mb": 1}], indirect=True)
async def test_oversized_files_are_refused_before_download(world: BotWorld) -> None:
    sent = world.api.send_document(DOCTOR, bytes(2 * 2**20), "series.zip", "application/zip")
    reply = await world.api.wait_for_message(DOCTOR, after=sent)
    assert reply["text"] == "This file is 2 MB; I can analyse files of at most 1 MB."
    assert not world.api.calls_to("getFile")


async def test_files_over_telegrams_download_cap_are_explained(world: BotWorld) -> None:
    sent = world.api.send_document(DOCTOR, bytes(21 * 2**20), "series.zip", "application/zip")
    reply = await world.api.wait_for_message(DOCTOR, lambda m: m["text"] != texts.ANALYSING, after=sent)
    assert reply["text"] == texts.scan_too_big_for_telegram(20 * 2**20)
    assert "at most 20 MB" in reply["text"]


@pytest.mark.parametrize("user, answer", [(CAREGIVER, "only for doctors"), (STRANGER, "I don't know you yet")])
async def test_only_doctors_may_send_scans(world: BotWorld, head_ct_dir: Path, user: int, answer: str) -> None:
    sent = world.api.send_photo(user, (head_ct_dir / "images" / SLICE).read_bytes())
    reply = await world.api.wait_for_message(user, after=sent)
    assert answer in reply["text"]
    assert not world.api.calls_to("getFile") and not scans_of(world.db, user)


@pytest.mark.parametrize("world", [{"scan_rate_limit": 1, "scan_rate_window_s": 600}], indirect=True)
async def test_the_rate_limit_says_when_to_come_back(world: BotWorld, head_ct_dir: Path) -> None:
    picture = (head_ct_dir / "images" / SLICE).read_bytes()
    await verdict_and_heat_map(world.api, world.api.send_photo(DOCTOR, picture))
    world.clock.advance(120)
    refused = world.api.send_photo(DOCTOR, picture)
    reply = await world.api.wait_for_message(DOCTOR, after=refused)
    assert reply["text"] == texts.scan_rate_limited(1, 600, 480)
    assert "in about 8 minutes" in reply["text"]
    world.clock.advance(480)
    await verdict_and_heat_map(world.api, world.api.send_photo(DOCTOR, picture))
    assert len(scans_of(world.db, DOCTOR)) == 2


def test_the_rate_limit_slides() -> None:
    limit = RateLimit(limit=2, window_s=60)
    assert limit.admit(1, 0) == 0 and limit.admit(1, 10) == 0
    assert limit.admit(1, 30) == 30  # the first one leaves the window at 60
    assert limit.admit(2, 30) == 0  # per user
    assert limit.admit(1, 60) == 0
    assert limit.admit(1, 65) == 5


@pytest.mark.parametrize(
    "name, mime, acceptable",
    [
        ("slice.png", "image/png", True), ("IMG_1.JPG", None, True), ("series.zip", None, True),
        ("CT000012", "application/octet-stream", True), ("1.2.840.113619.2.55", None, True),
        ("export", "application/dicom", True), ("notes.txt", "text/plain", False),
        ("scan.heic", "image/heic", False), ("report.pdf", "application/pdf", False),
    ],
)
def test_uploads_are_judged_by_name_and_type(name: str, mime: str | None, acceptable: bool) -> None:
    upload = Upload("file-1", name, mime, 1000)
    assert (refusal(upload, Settings(_env_file=None)) is None) is acceptable


def test_the_cloud_download_cap_applies_only_to_telegrams_own_servers() -> None:
    upload = Upload("file-1", "series.zip", "application/zip", 30 * 2**20)
    cloud = Settings(_env_file=None, telegram_api_url=CLOUD_API_URL)
    local = Settings(_env_file=None, telegram_api_url="http://127.0.0.1:8081")
    assert refusal(upload, cloud) == texts.scan_too_big_for_telegram(20 * 2**20)
    assert refusal(upload, local) is None
