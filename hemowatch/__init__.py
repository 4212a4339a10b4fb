"""HemoWatch: head CT haemorrhage triage and vitals monitoring through Telegram."""

__version__ = "0.1.0"
