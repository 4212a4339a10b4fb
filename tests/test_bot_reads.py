"""Doctors' reads and the site profile in the chat, end to end: the real bot, the local Bot API server, a real
SQLite file and the shipped ONNX model. A verdict names the site profile it came from (or that there is none),
carries the Bleed confirmed / No bleed buttons for the doctor who sent the scan, and a read lands in the casebook
with the features of the assessed slices and nothing of the picture; a bleed confirmed on a scan called normal
reaches the admins at once; the admins hear of every change of the profile and roll it back with one command;
the nightly update learns from the reads."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from botworld import ADMIN, BotWorld, adopt_card_profile, running_bot
from PIL import Image

from bot import texts
from bot.site_admin import announce_site_changes
from core.roles import Role
from core.settings import DEFAULT_MODEL, Settings
from hemowatch.builders import analyzer_from_settings, site_profile_lookup
from hemowatch.site_jobs import NIGHTLY, update_site_profile
from inference.analyzer import Analyzer
from inference.model import ModelCard
from localbotapi import JSON, BotApiServer
from store import site_profiles, studies
from store.database import atomic
from store.site_profiles import group_key, study_ref
from store.studies import SeriesRecord, StudyHeader
from testsupport.waiting import eventually

DOCTOR, OTHER_DOCTOR, CAREGIVER = 10, 11, 20
PATIENT = "bed-1"
BLEED, NORMAL = "001.png", "100.png"  # the model says haemorrhage (99%) and none (3%) on these reference slices
FEATURES = 1280
CASE_COLUMNS = {"id", "created_at", "source", "model_sha256", "group_key", "label", "features", "shipped", "verdict",
                "probability", "profile_id", "scan_ref", "read_by", "read_at"}


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return analyzer_from_settings(Settings(_env_file=None))


@pytest.fixture
async def world(
    bot_api: BotApiServer, database: Path | str, tmp_path: Path, analyzer: Analyzer
) -> AsyncIterator[BotWorld]:
    async with running_bot(bot_api, database, tmp_path) as world:
        shared = world.application.bot_data["shared"]
        shared.analyzer = analyzer
        shared.site_profile = site_profile_lookup(analyzer.model_info.sha256)
        world.add_patient(PATIENT)
        world.add_person(DOCTOR, Role.DOCTOR)
        world.add_person(OTHER_DOCTOR, Role.DOCTOR)
        world.add_person(CAREGIVER, Role.CAREGIVER, PATIENT)
        world.api.introduce(ADMIN, "Ana")  # the admin has opened the bot, so it may write to her
        yield world


async def verdict_of(world: BotWorld, head_ct_dir: Path, name: str) -> JSON:
    sent = world.api.send_document(DOCTOR, (head_ct_dir / "images" / name).read_bytes(), "Jane Doe.png", "image/png")
    return await world.api.wait_for_message(DOCTOR, lambda m: texts.DISCLAIMER in m.get("text", ""), 60, sent)


def buttons(message: JSON) -> list[tuple[str, str]]:
    return [(button["text"], button["callback_data"])
            for row in message.get("reply_markup", {}).get("inline_keyboard", []) for button in row]


def cases(world: BotWorld) -> list[dict]:
    return list(world.db.query("select * from site_cases order by id"))


def shares_bytes(blob: bytes, data: bytes, width: int = 16) -> bool:
    """Whether any `width`-byte piece of `data` with some variety in it (not a run of one value) is in `blob`."""
    pieces = (data[start:start + width] for start in range(0, len(data) - width, width))
    return any(len(set(piece)) >= 8 and piece in blob for piece in pieces)


async def test_a_doctors_scan_carries_the_read_buttons_and_the_read_keeps_features_only(
    world: BotWorld, head_ct_dir: Path
) -> None:
    verdict = await verdict_of(world, head_ct_dir, BLEED)
    assert texts.NOT_VALIDATED in verdict["text"] and texts.READ_INVITATION in verdict["text"]
    assert buttons(verdict) == [("Bleed confirmed", "read:scan-1:1"), ("No bleed", "read:scan-1:0")]
    (case,) = cases(world)
    assert case["label"] is None and case["verdict"] == "hemorrhage" and case["profile_id"] is None

    world.clock.advance(3600)
    answer = await world.press(DOCTOR, verdict, "read:scan-1:1")
    assert answer["text"] == texts.read_recorded(1, None)
    (case,) = cases(world)
    assert set(case) == CASE_COLUMNS  # no column for a picture, a file name or a patient
    assert (case["source"], case["scan_ref"], case["label"]) == ("scan", "scan-1", 1)
    assert (case["read_by"], case["read_at"]) == (DOCTOR, world.clock())
    assert case["group_key"] == group_key("scan-1")
    assert case["model_sha256"] == ModelCard.beside(DEFAULT_MODEL).sha256
    assert len(case["features"]) == FEATURES * 2 and len(case["shipped"]) == 4  # one slice: float16s, one float32
    picture = (head_ct_dir / "images" / BLEED).read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(picture)).convert("L")).tobytes()
    for blob in (case["features"], case["shipped"]):
        assert not shares_bytes(blob, picture) and not shares_bytes(blob, pixels)
    assert not any("Jane" in str(value) for value in case.values())

    world.clock.advance(60)
    answer = await world.press(DOCTOR, verdict, "read:scan-1:0")
    assert answer["text"] == texts.read_recorded(0, 1)
    assert "Changed to no bleed (it was bleed confirmed). The last read counts." == answer["text"]
    (case,) = cases(world)
    assert (case["label"], case["read_at"]) == (0, world.clock())


async def test_a_verdict_under_a_site_profile_says_how_many_cases_it_was_calibrated_on(
    world: BotWorld, head_ct_dir: Path
) -> None:
    profile_id = adopt_card_profile(world.db, 42, world.clock())
    verdict = await verdict_of(world, head_ct_dir, BLEED)
    assert f"Calibrated for this hospital on 42 cases (site profile {profile_id})." in verdict["text"]
    assert texts.NOT_VALIDATED not in verdict["text"]
    (case,) = cases(world)
    assert case["profile_id"] == profile_id


async def test_only_the_doctor_who_sent_a_scan_may_read_it(world: BotWorld, head_ct_dir: Path) -> None:
    await verdict_of(world, head_ct_dir, BLEED)
    for user, data, refusal in (
        (CAREGIVER, "read:scan-1:1", "only for doctors"),
        (OTHER_DOCTOR, "read:scan-1:1", texts.READ_GONE),
        (DOCTOR, "read:scan-2:1", texts.READ_GONE),  # no such scan
        (DOCTOR, "read:scan-1:2", texts.READ_GONE),  # no such read
    ):
        own = await world.say(user, "/help")  # a forged button under a message of their own
        assert not buttons(own)
        answer = await world.press(user, own, data)
        assert refusal in answer["text"]
    (case,) = cases(world)
    assert case["label"] is None and case["read_by"] is None


async def test_a_bleed_confirmed_on_a_scan_called_normal_alerts_the_admins(world: BotWorld, head_ct_dir: Path) -> None:
    verdict = await verdict_of(world, head_ct_dir, NORMAL)
    assert verdict["text"].startswith(texts.VERDICTS["no_hemorrhage"])
    await world.press(DOCTOR, verdict, "read:scan-1:1")
    told = await world.api.wait_for_message(ADMIN, lambda m: "Missed bleed" in m.get("text", ""))
    (case,) = cases(world)
    assert told["text"] == (
        f"🔴 Missed bleed\nUser {DOCTOR} confirmed a bleed on a scan sent in the chat that the shipped model (not "
        f"validated at this site) called no haemorrhage (probability {case['probability']:.2f}).\n"
        "Commission the model on this hospital's cases: hemowatch site commission."
    )


async def test_studies_say_which_have_been_read(world: BotWorld) -> None:
    study = "a" * 32
    now = world.clock()
    record = SeriesRecord("b" * 32, study, "CTSCANNER", 28, now, now, now, "no_hemorrhage", 0.05, 0.24, 28, 20, None,
                          "2.6.0", "series 2 (CT, 28 slices)")
    studies.record_series(world.db, record, StudyHeader("ACC-7", None), None, now)
    site_profiles.keep_case(world.db, scan_ref=study_ref(study), source="dicom", model_sha256="sha",
                            features=np.ones((20, FEATURES)), shipped=np.full(20, 0.05), now=now,
                            verdict="no_hemorrhage", probability=0.05, profile_id=None)
    listing = await world.say(DOCTOR, "/studies")
    assert "acc. ACC-7" in listing["text"] and listing["text"].endswith("· not read yet")

    answer = await world.press(DOCTOR, listing, f"read:study-{study}:1")  # any doctor may read a scanner's study
    assert answer["text"] == texts.read_recorded(1, None)
    told = await world.api.wait_for_message(ADMIN, lambda m: "Missed bleed" in m.get("text", ""))
    assert "a head CT from a scanner (see /studies)" in told["text"]
    listing = await world.say(DOCTOR, "/studies")
    assert listing["text"].endswith(f"· read: bleed confirmed (User {DOCTOR})")


async def test_admins_hear_of_each_change_of_the_site_profile_and_roll_it_back_with_one_command(
    world: BotWorld
) -> None:
    first = adopt_card_profile(world.db, 42, world.clock())
    assert await announce_site_changes(world.application) == 1
    told = await world.api.wait_for_message(ADMIN, lambda m: "adopted" in m.get("text", ""))
    assert told["text"] == (
        f"🧪 Site profile {first} adopted by ana (command line): fitted on 42 cases from 30 patients (12 with "
        f"haemorrhage) for model {ModelCard.beside(DEFAULT_MODEL).version}, thresholds chosen for sensitivity "
        "0.95.\nCross-validated on those cases, the shipped model → the new profile:\n"
        "• AUC 0.850 → 0.900\n• sensitivity 0.96 → 0.96\n• specificity 0.40 → 0.55\n"
        "• alerts per 100 cases 62 → 53\n"
        "/siterollback goes back to the shipped model, which has not been validated at this site."
    )
    assert await announce_site_changes(world.application) == 0  # told once
    second = adopt_card_profile(world.db, 50, world.clock())

    refused = await world.say(DOCTOR, "/siterollback")
    assert refused["text"] == texts.only_for(["admin"])
    assert site_profiles.active_profile(world.db).id == second
    rolled = await world.say(ADMIN, "/siterollback")
    assert rolled["text"].startswith(f"🧪 Site profile {second} adopted")  # the change not yet told comes first
    told = await world.api.wait_for_message(ADMIN, lambda m: "rolled back" in m.get("text", ""), after=rolled)
    assert told["text"] == (
        f"↩️ Site profile rolled back by Ana (Telegram): verdicts now come from site profile {first} "
        f"(fitted on 42 cases), instead of site profile {second} (fitted on 50 cases). /siterollback undoes this."
    )
    assert site_profiles.active_profile(world.db).id == first
    await eventually(lambda: all(change.announced_at for change in site_profiles.changes(world.db)), 10,
                     "every change to be marked as told")


def _read_cases(world: BotWorld, patients: int, seed: int) -> None:
    """Doctors' reads of chat scans, half of them bleeds, whose features carry the bleed along the shipped head."""
    card = ModelCard.beside(DEFAULT_MODEL)
    direction = card.head.weights / np.linalg.norm(card.head.weights)
    rng = np.random.default_rng(seed)
    for number in range(patients):
        label = number % 2
        features = rng.normal(0.0, 0.05, size=(1, FEATURES)) + 0.2 + label * 3.0 * direction
        ref = f"scan-{seed * 1000 + number}"
        with atomic(world.db):
            site_profiles.add_case(world.db, source="scan", model_sha256=card.sha256, group=ref, label=None,
                                   features=features, shipped=card.head.probability(features.astype(np.float32)),
                                   now=world.clock(), verdict="hemorrhage", probability=0.5, scan_ref=ref)
            site_profiles.record_read(world.db, ref, label, DOCTOR, world.clock())


async def test_the_nightly_update_learns_from_reads_and_leaves_an_admins_choice_alone(world: BotWorld) -> None:
    settings = world.application.bot_data["shared"].settings
    assert update_site_profile(settings, world.clock()) is None  # no read yet
    _read_cases(world, 24, seed=1)
    world.clock.advance(60)
    outcome = update_site_profile(settings, world.clock())
    assert outcome is not None and outcome.profile_id == 1, outcome.judgement.reason
    assert site_profiles.active_profile(world.db).created_by == NIGHTLY
    await announce_site_changes(world.application)
    told = await world.api.wait_for_message(ADMIN, lambda m: "adopted" in m.get("text", ""))
    assert told["text"].startswith(f"🧪 Site profile 1 adopted by {NIGHTLY}: fitted on 24 cases from 24 patients")
    assert "Cross-validated on those cases, the shipped model → the new profile:\n• AUC " in told["text"]

    world.clock.advance(60)
    assert update_site_profile(settings, world.clock()) is None  # nothing read since
    site_profiles.switch_off(world.db, "ana (command line)", world.clock())
    world.clock.advance(60)
    _read_cases(world, 2, seed=2)
    assert update_site_profile(settings, world.clock()) is None  # switched off stays off
    assert site_profiles.active_profile(world.db) is None
