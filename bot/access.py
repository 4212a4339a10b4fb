"""Who is calling and what they may do: every command and button goes through `authorize`.

Roles: admins (ids from settings) may do everything; doctors manage their own patients; caregivers see
only the patients they were invited for. Unknown and revoked users get one polite explanation, nothing else.
A patient the caller is not linked to looks exactly like a patient that does not exist.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.bot_data import bot_data
from core.roles import Role
from core.settings import Settings
from store import patients, people
from store.database import Database

Context = ContextTypes.DEFAULT_TYPE


@dataclass(frozen=True, slots=True)
class Caller:
    telegram_id: int
    role: Role
    name: str

    def has_role(self, *roles: Role) -> bool:
        """Admins hold every role."""
        return self.role is Role.ADMIN or self.role in roles


def identify(db: Database, settings: Settings, telegram_id: int, name: str) -> Caller | None:
    """The caller's standing, or None for unknown and revoked users."""
    if telegram_id in settings.admin_user_ids:
        return Caller(telegram_id, Role.ADMIN, name)
    person = people.get_person(db, telegram_id)
    return None if person is None else Caller(telegram_id, person.role, person.display_name)


def patient_role(db: Database, caller: Caller, patient_id: str) -> Role | None:
    """The caller's role for this patient, or None when they may not see it (or it does not exist)."""
    if caller.role is Role.ADMIN:
        return Role.ADMIN if patients.get_patient(db, patient_id) is not None else None
    return people.member_role(db, patient_id, caller.telegram_id)


def may_view(db: Database, caller: Caller, patient_id: str) -> bool:
    return patient_role(db, caller, patient_id) is not None


def may_manage(db: Database, caller: Caller, patient_id: str) -> bool:
    """Admins and the patient's doctors may change thresholds and invite caregivers."""
    return patient_role(db, caller, patient_id) in (Role.ADMIN, Role.DOCTOR)


def visible_patient_ids(db: Database, caller: Caller) -> list[str] | None:
    """The patients the caller may see; None means all of them (admins)."""
    return None if caller.role is Role.ADMIN else people.patient_ids_of(db, caller.telegram_id)


GuardedHandler = Callable[[Update, Context, Caller], Awaitable[None]]


async def refuse(update: Update, text: str) -> None:
    """Answer a message or a button press with `text`."""
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(text)


def authorize(*roles: Role) -> Callable[[GuardedHandler], Callable[[Update, Context], Awaitable[None]]]:
    """Let the handler run only for known users holding one of `roles` (any known user when empty).

    The handler receives the `Caller` as a third argument. Buttons are re-checked on every press, so a
    replayed or forged button from a revoked user or another patient's caregiver does nothing.
    """

    def decorate(handler: GuardedHandler) -> Callable[[Update, Context], Awaitable[None]]:
        @functools.wraps(handler)
        async def guarded(update: Update, context: Context) -> None:
            user = update.effective_user
            if user is None:
                return
            shared = bot_data(context)
            caller = await shared.store.call(identify, shared.settings, user.id, user.full_name)
            if caller is None:
                await refuse(update, texts.UNKNOWN_USER)
                return
            if roles and not caller.has_role(*roles):
                await refuse(update, texts.only_for(roles))
                return
            if update.effective_chat is not None and caller.role is not Role.ADMIN:
                await shared.store.call(people.record_seen, user.id, update.effective_chat.id)
            await handler(update, context, caller)

        return guarded

    return decorate
