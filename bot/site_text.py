"""The wording (HTML) of what the admins are told about the site profile: each change of the profile in use, with
its figures before and after, and a bleed a doctor confirmed on a scan that was called normal."""

from __future__ import annotations

from html import escape
from typing import Any

from store.site_profiles import SCAN_PREFIX, SiteChange, StoredCase, StoredProfile

SHIPPED = "the shipped model, which has not been validated at this site"
# The figures an adoption is judged by, all cross-validated on the same cases: (name, key, decimals).
FIGURES = (("AUC", "auc", 3), ("sensitivity", "sensitivity", 2), ("specificity", "specificity", 2),
           ("alerts per 100 cases", "alerts_per_100", 0))


def _profile_name(profile: StoredProfile | None) -> str:
    return SHIPPED if profile is None else f"site profile {profile.id} (fitted on {profile.n_cases} cases)"


def _figure(values: dict[str, Any], key: str, decimals: int) -> str:
    value = values.get(key)
    return "n/a" if value is None else f"{value:.{decimals}f}"


def site_change_text(change: SiteChange, profile: StoredProfile | None, before: StoredProfile | None) -> str:
    """A change of the profile in use: what is in use now and what was before, and how to go back."""
    by = escape(change.by)
    if change.action == "adopted" and profile is not None:
        return _adopted(profile, before, by)
    if change.action == "off":
        return (f"⏸ <b>Site profile switched off</b> by {by}: verdicts now come from {SHIPPED}, instead of "
                f"{escape(_profile_name(before))}. /siterollback brings it back.")
    return (f"↩️ <b>Site profile rolled back</b> by {by}: verdicts now come from {escape(_profile_name(profile))}, "
            f"instead of {escape(_profile_name(before))}. /siterollback undoes this.")


def _adopted(profile: StoredProfile, before: StoredProfile | None, by: str) -> str:
    figures = profile.figures
    old, new = figures.get("current") or figures.get("shipped") or {}, figures.get("candidate") or {}
    old_name = "the shipped model" if before is None else f"site profile {before.id}"
    lines = [
        f"🧪 <b>Site profile {profile.id} adopted</b> by {by}: fitted on {profile.n_cases} cases from "
        f"{profile.n_patients} patients ({profile.n_bleeding} with haemorrhage) for model "
        f"{escape(profile.model_version)}, thresholds chosen for sensitivity {profile.sensitivity_target:.2f}.",
        f"Cross-validated on those cases, {old_name} → the new profile:",
    ]
    lines += [f"• {name} {_figure(old, key, decimals)} → {_figure(new, key, decimals)}" for name, key, decimals in FIGURES]
    lines.append(f"/siterollback goes back to {escape(_profile_name(before))}.")
    return "\n".join(lines)


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
