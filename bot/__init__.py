"""The Telegram bot: commands, roles and invitations, scan triage and alert delivery."""
