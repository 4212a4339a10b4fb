"""Joining by invitation, through the bot and through `hemowatch admin`."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botworld import ADMIN, DOCTOR, PATIENT, BotWorld, running_ward
from stores import store_environment, store_settings

from bot.application import register_menu
from core.roles import Role
from core.settings import Settings
from hemowatch.admin_command import run_admin
from localbotapi import BotApiServer
from store import open_database, patients, people

NEWCOMER, STRANGER = 50, 60
LINK = re.compile(r"https://t\.me/hemowatch_test_bot\?start=([A-Za-z0-9_-]+)")


@pytest.fixture
async def world(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> AsyncIterator[BotWorld]:
    async with running_ward(bot_api, database, tmp_path) as world:
        yield world


def invitation_code(text: str) -> str:
    match = LINK.search(text)
    assert match, text
    return match.group(1)


async def test_caregiver_joins_with_a_doctor_s_link_and_sees_only_that_patient(world: BotWorld) -> None:
    code = invitation_code((await world.say(DOCTOR, f"/invite caregiver {PATIENT}"))["text"])
    reply = await world.say(NEWCOMER, f"/start {code}")
    assert "joined as caregiver for patient ward-1" in reply["text"]
    told = await world.api.wait_for_message(DOCTOR, lambda m: "joined as caregiver" in m.get("text", ""))
    assert f"user id {NEWCOMER}" in told["text"]
    assert people.member_role(world.db, PATIENT, NEWCOMER) is Role.CAREGIVER
    assert "ward-1" in (await world.say(NEWCOMER, "/patients"))["text"]


async def test_an_invitation_works_once(world: BotWorld) -> None:
    code = invitation_code((await world.say(DOCTOR, f"/invite caregiver {PATIENT}"))["text"])
    await world.say(NEWCOMER, f"/start {code}")
    reply = await world.say(STRANGER, f"/start {code}")
    assert "already been used" in reply["text"]
    assert people.get_person(world.db, STRANGER) is None
    assert "I don't know you yet" in (await world.say(STRANGER, f"/status {PATIENT}"))["text"]


async def test_an_invitation_expires(world: BotWorld) -> None:
    code = invitation_code((await world.say(ADMIN, "/invite doctor"))["text"])
    world.clock.advance(world.application.bot_data["shared"].settings.invite_ttl_hours * 3600)
    reply = await world.say(NEWCOMER, f"/start {code}")
    assert "expired" in reply["text"]
    assert people.get_person(world.db, NEWCOMER) is None


async def test_a_revoked_caregiver_is_a_stranger_again(world: BotWorld) -> None:
    code = invitation_code((await world.say(DOCTOR, f"/invite caregiver {PATIENT}"))["text"])
    await world.say(NEWCOMER, f"/start {code}")
    await world.api.wait_for_message(DOCTOR, lambda m: "joined as caregiver" in m.get("text", ""))
    assert "no longer has access" in (await world.say(DOCTOR, f"/revoke {NEWCOMER}"))["text"]
    for command in ("/start", "/help", f"/status {PATIENT}"):
        assert "I don't know you yet" in (await world.say(NEWCOMER, command))["text"]


@pytest.mark.parametrize("argument", ["²", "-20", "1e3", "1" * 17])
async def test_revoke_takes_a_user_id_in_plain_digits(world: BotWorld, argument: str) -> None:
    reply = await world.say(ADMIN, f"/revoke {argument}")
    assert reply["text"] == "Use /revoke <user id>. You see user ids in /patients and when someone joins."


async def test_unknown_users_get_one_explanation_and_nothing_else(world: BotWorld) -> None:
    sent = world.api.send_text(STRANGER, "/help")
    await world.api.wait_for_message(STRANGER, after=sent)
    await world.say(STRANGER, "/start")  # the next reply proves the first update was fully handled
    replies = [m for m in world.api.history(STRANGER) if m["message_id"] > sent["message_id"]]
    assert [m["text"].startswith("Hello. This is a private HemoWatch service") for m in replies] == [True, True]


async def test_the_command_menu_is_registered(bot_api: BotApiServer, world: BotWorld) -> None:
    await register_menu(world.application.bot)
    assert {"status", "patients", "mute", "help"} <= {c["command"] for c in bot_api.commands}


async def test_admin_command_invites_a_doctor(world: BotWorld, capsys: pytest.CaptureFixture[str]) -> None:
    await world.say(ADMIN, "/start")  # so the bot may tell the admin when the doctor joins
    settings = world.application.bot_data["shared"].settings
    args = argparse.Namespace(admin_command="invite", role="doctor")
    assert await asyncio.to_thread(run_admin, args, settings) == 0
    code = invitation_code(capsys.readouterr().out)
    assert "joined as doctor" in (await world.say(NEWCOMER, f"/start {code}"))["text"]
    await world.api.wait_for_message(ADMIN, lambda m: "joined as doctor" in m.get("text", ""))
    assert people.get_person(world.db, NEWCOMER).role is Role.DOCTOR


async def test_admin_command_logs_no_bot_token(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> None:
    """As a user runs it, logging set up by the command line: request lines would name the token."""
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "TELEGRAM_BOT_TOKEN": bot_api.token, "TELEGRAM_API_URL": bot_api.url,
    } | store_environment(database, tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hemowatch.cli", "admin", "invite", "doctor", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0 and invitation_code(out.decode())
    assert bot_api.calls_to("getMe") and bot_api.token not in err.decode()


def test_admin_command_adds_a_patient_once(
    database: Path | str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(_env_file=None, **store_settings(database, tmp_path))
    args = argparse.Namespace(admin_command="add-patient", patient_id="bed-7", name="Ann Smith")
    assert run_admin(args, settings) == 0
    assert run_admin(args, settings) == 1
    assert "already exists" in capsys.readouterr().err
    assert patients.get_patient(open_database(database), "bed-7").name == "Ann Smith"
