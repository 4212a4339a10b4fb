"""`hemowatch demo`: the whole service on one machine without a Telegram account.

The real service (`hemowatch.wiring.running`) talks to the local Bot API server (`localbotapi`) instead of
Telegram; a web chat page on 127.0.0.1 plays three people through that server, so every message goes through
the same bot handlers as on Telegram, and a simulated bedside device publishes to the embedded broker.
"""
