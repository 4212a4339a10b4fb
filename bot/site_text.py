"""The wording (HTML) of what the admins are told about the site profile: a bleed a doctor confirmed on a scan that
was called normal."""

from __future__ import annotations

from html import escape

from store.site_profiles import SCAN_PREFIX, StoredCase


def missed_bleed_text(reader: str, scan_ref: str, case: StoredCase) -> str:
    """A doctor confirmed a bleed on a scan or study judged normal: which, by whom, and what judged it."""
    what = "a scan sent in the chat" if scan_ref.startswith(SCAN_PREFIX) else "a head CT from a scanner (see /studies)"
    probability = "" if case.probability is None else f" (probability {case.probability:.2f})"
    if case.profile_id is None:
        judge, advice = "the shipped model (not validated at this site)", "Commission the model on this hospital's cases: <code>hemowatch site commission</code>."
    else:
        judge = f"site profile {case.profile_id}"
        advice = ("See how it does with <code>hemowatch site report</code>; /siterollback goes back to what was in "
                  "use before it.")
    return (f"🔴 <b>Missed bleed</b>\n{escape(reader)} confirmed a bleed on {what} that {judge} called no "
            f"haemorrhage{probability}.\n{advice}")
