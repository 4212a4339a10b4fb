"""Joining and leaving: /start (with an invitation), /help, /invite and /revoke."""

from __future__ import annotations

import logging

import sqlite_utils
from telegram import Update
from telegram.error import TelegramError
from telegram.helpers import create_deep_linked_url

from bot import texts
from bot.access import Caller, Context, authorize, may_manage, patient_role
from bot.bot_data import bot_data
from core.roles import TELEGRAM_ID, Role
from store import outbox, people
from store.people import InvitationError

log = logging.getLogger(__name__)


async def start(update: Update, context: Context) -> None:
    """Greets a known user, or lets an invited person join with the code from their link."""
    if context.args:
        await _join(update, context, context.args[0])
    else:
        await _greet(update, context)


@authorize()
async def _greet(update: Update, context: Context, caller: Caller) -> None:
    shared = bot_data(context)
    await update.effective_message.reply_text(texts.welcome(caller.name, caller.role))
    await shared.store.call(outbox.release_held, shared.clock())  # alerts nobody could receive may reach them now


async def _join(update: Update, context: Context, code: str) -> None:
    shared = bot_data(context)
    user, chat = update.effective_user, update.effective_chat
    try:
        invitation = await shared.store.call(
            people.redeem_invitation, code, user.id, user.full_name, chat.id, shared.clock()
        )
    except InvitationError as error:
        await update.effective_message.reply_text(str(error))
        return
    await update.effective_message.reply_text(texts.joined(user.full_name, invitation.role, invitation.patient_id))
    await shared.store.call(outbox.release_held, shared.clock())  # alerts nobody could receive go to them now
    if invitation.created_by == people.SERVER:
        return
    try:
        await context.bot.send_message(
            invitation.created_by,
            texts.someone_joined(user.full_name, user.id, invitation.role, invitation.patient_id),
        )
    except TelegramError as error:  # the joiner is in; telling the inviter is a courtesy
        log.warning("could not tell %s that %s joined: %s", invitation.created_by, user.id, error)


@authorize()
async def help_command(update: Update, context: Context, caller: Caller) -> None:
    """Explains, in plain words, what this user can do."""
    text = texts.HELP_ALL
    if caller.has_role(Role.DOCTOR):
        text += texts.HELP_DOCTOR
    if caller.role is Role.ADMIN:
        text += texts.HELP_ADMIN
    await update.effective_message.reply_text(text)


@authorize(Role.DOCTOR)
async def invite(update: Update, context: Context, caller: Caller) -> None:
    """Creates a one-time deep link: doctors (admins only) or a caregiver for one patient."""
    shared = bot_data(context)
    args = context.args or []
    kind = args[0].lower() if args else ""
    patient_id = args[1] if len(args) > 1 else None
    if kind == "doctor" and len(args) <= 2:
        if caller.role is not Role.ADMIN:
            await update.effective_message.reply_text(texts.only_for([Role.ADMIN]))
            return
        if patient_id is not None and await shared.store.call(patient_role, caller, patient_id) is None:
            await update.effective_message.reply_text(texts.no_patient(patient_id))
            return
        role = Role.DOCTOR
    elif kind == "caregiver" and len(args) == 2:
        if not await shared.store.call(may_manage, caller, patient_id):
            await update.effective_message.reply_text(texts.no_patient(patient_id))
            return
        role = Role.CAREGIVER
    else:
        await update.effective_message.reply_text(texts.INVITE_USAGE)
        return
    ttl_hours = shared.settings.invite_ttl_hours
    invitation = await shared.store.call(
        people.create_invitation, role, patient_id, caller.telegram_id, shared.clock(), ttl_hours * 3600
    )
    link = create_deep_linked_url(context.bot.username, invitation.code)
    await update.effective_message.reply_text(texts.invitation(role, patient_id, link, ttl_hours))


def _may_revoke(db: sqlite_utils.Database, caller: Caller, target: people.Person) -> bool:
    """Admins may revoke anyone stored; doctors only caregivers of a patient they are doctor of."""
    if caller.role is Role.ADMIN:
        return True
    if target.role is not Role.CAREGIVER:
        return False
    return any(may_manage(db, caller, pid) for pid in people.patient_ids_of(db, target.telegram_id))


@authorize(Role.DOCTOR)
async def revoke(update: Update, context: Context, caller: Caller) -> None:
    """Removes someone's access: their links, mutes and future alerts."""
    shared = bot_data(context)
    args = context.args or []
    if len(args) != 1 or not TELEGRAM_ID.fullmatch(args[0]):
        await update.effective_message.reply_text(texts.REVOKE_USAGE)
        return
    target = await shared.store.call(people.get_person, int(args[0]))
    if target is None or not await shared.store.call(_may_revoke, caller, target):
        await update.effective_message.reply_text(texts.not_revocable(int(args[0])))
        return
    await shared.store.call(people.revoke_user, target.telegram_id, shared.clock())
    await update.effective_message.reply_text(texts.revoked(target.telegram_id))
