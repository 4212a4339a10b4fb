"""The DICOM node: a Storage SCP that scanners and PACS push head CTs to; each complete series is spooled,
analysed by the same `Analyzer` as the bot, recorded, and a flagged study alerts the doctors on call."""
