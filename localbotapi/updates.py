"""How updates reach the bot: queued in order, then fetched by `getUpdates` long polls or, while a webhook is set,
POSTed to it one at a time (as with a `telegram-bot-api --local` server, plain HTTP on any port will do)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass

import aiohttp

from localbotapi.changes import Changes
from localbotapi.protocol import JSON, ApiError

SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook accepts as secret_token
WEBHOOK_RETRY_S = 0.1  # Telegram retries a failed webhook delivery later; here soon, to keep tests quick


@dataclass
class Webhook:
    """The webhook set by `setWebhook`, and how its last delivery failed (for `getWebhookInfo`)."""

    url: str
    secret_token: str | None
    max_connections: int
    last_error_date: int | None = None
    last_error_message: str | None = None


class Updates:
    def __init__(self, changes: Changes) -> None:
        self.webhook: Webhook | None = None
        self.closing = False
        self._pending: list[JSON] = []
        self._ids = itertools.count(1)
        self._changes = changes

    def queue(self, update: JSON) -> None:
        self._pending.append({"update_id": next(self._ids), **update})
        self._changes.count()

    def close(self) -> None:
        """Let pending long polls and the webhook delivery return at once."""
        self.closing = True
        self._changes.notify()

    async def get_updates(self, params: JSON) -> list[JSON]:
        """Confirm the updates before `offset`, then wait up to `timeout` seconds for any."""
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        if offset:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        limit = int(params.get("limit") or 100)
        pending = await self._changes.until(lambda: self.closing or self.webhook or self._pending,
                                            float(params.get("timeout") or 0))
        if self.webhook is not None:
            raise ApiError(409, "Conflict: terminated by setWebhook request")
        return self._pending[:limit] if pending else []

    def set_webhook(self, params: JSON) -> bool:
        if not params.get("url"):  # an empty url removes the webhook
            return self.delete_webhook(params)
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook = Webhook(params["url"], secret, int(params.get("max_connections") or 40))
        self._changes.notify()
        return True

    def delete_webhook(self, params: JSON) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def webhook_info(self) -> JSON:
        info: JSON = {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._pending)}
        if self.webhook is not None:
            info.update(url=self.webhook.url, max_connections=self.webhook.max_connections)
            if self.webhook.last_error_date is not None:
                info.update(last_error_date=self.webhook.last_error_date,
                            last_error_message=self.webhook.last_error_message)
        return info

    async def deliver_to_webhook(self) -> None:
        """While a webhook is set, send it the oldest pending update until it accepts, then the next."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not self.closing:
                webhook = self.webhook
                if webhook is None or not self._pending:
                    await self._changes.event.wait()
                    continue
                update = self._pending[0]
                error = await _post_update(session, webhook, update)
                if error is None:
                    if self._pending and self._pending[0] is update:  # not dropped meanwhile
                        self._pending.pop(0)
                else:
                    webhook.last_error_date, webhook.last_error_message = int(time.time()), error
                    await asyncio.sleep(WEBHOOK_RETRY_S)


async def _post_update(session: aiohttp.ClientSession, webhook: Webhook, update: JSON) -> str | None:
    """POST `update` to the webhook; None if it was accepted, else the error getWebhookInfo reports."""
    headers = {} if webhook.secret_token is None else {"X-Telegram-Bot-Api-Secret-Token": webhook.secret_token}
    try:
        async with session.post(webhook.url, json=update, headers=headers) as response:
            if 200 <= response.status < 300:
                return None
            return f"Wrong response from the webhook: {response.status} {response.reason}"
    except (aiohttp.ClientError, TimeoutError) as error:
        return f"Connection failed: {error}"
