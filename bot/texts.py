"""Every sentence the bot says, in one place so they read consistently."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from bot.telegram_limits import IDENTIFIER_MAX, NAME_MAX, clip
from core.vitals import THRESHOLD_VITALS, VITALS
from inference.percent import percent

if TYPE_CHECKING:
    from inference.result import StudyResult

UNKNOWN_USER = (
    "Hello. This is a private HemoWatch service for a care team, and I don't know you yet.\n"
    "If you should have access, ask the doctor or administrator for an invitation link and open it."
)

DISCLAIMER = "Decision support only: it never replaces a clinician's judgement."


def only_for(roles: Iterable[str]) -> str:
    names = " and ".join(f"{role}s" for role in roles)
    return f"Sorry, that is only for {names}."


def welcome(name: str, role: str) -> str:
    return f"Welcome, {name}. You are signed in as {role}.\nSend /help to see what you can do."


def joined(name: str, role: str, patient_id: str | None) -> str:
    where = f" for patient {patient_id}" if patient_id else ""
    return f"Welcome, {name}. You have joined as {role}{where}.\nSend /help to see what you can do."


def someone_joined(name: str, telegram_id: int, role: str, patient_id: str | None) -> str:
    where = f" for patient {patient_id}" if patient_id else ""
    return f"{name} (user id {telegram_id}) joined as {role}{where} with your invitation."


HELP_ALL = (
    "HemoWatch watches your patients' vital signs and tells you when something needs attention.\n\n"
    "/patients [page] – the patients you follow (a long list comes in pages)\n"
    "/status <patient> – latest vital signs, the NEWS2 score, open alerts and a trend picture\n"
    "/thresholds <patient> – the alert limits for a patient\n"
    "/mute <patient> <minutes> – pause non-emergency alerts about a patient (0 ends it); "
    "emergencies always come through\n"
    "/help – this message\n\n"
    "When an alert arrives, press Acknowledge: everyone's copy shows who pressed it. Urgent alerts keep going to "
    "more people until a doctor acknowledges them; a caregiver's press shows the others they have seen it."
)

HELP_DOCTOR = (
    "\n\nFor doctors:\n"
    "Send a head CT (a photo, a PNG or JPEG export, a DICOM file or a ZIP of a series) to get a haemorrhage "
    "triage. Do not send images that show the patient's name or other identifying details.\n"
    f"/addpatient <id> [name] – register a patient (an id of 1-32 letters, digits, - or _; a name of at most "
    f"{NAME_MAX} characters); you become their doctor\n"
    "/thresholds <patient> <vital> <low> <high> – change an alert limit\n"
    "/invite caregiver <patient> – a one-time link for a relative or nurse to follow that patient\n"
    "/revoke <user id> – remove a caregiver of your patients\n"
    "/oncall on|off – say you are (or are no longer) on call for head CTs the scanners send; /oncall shows who is\n"
    "/studies – the last 20 head CTs the scanners sent, with their triage and your reads\n"
    "Under each triage verdict and head CT alert, press Bleed confirmed or No bleed once you know: HemoWatch "
    "keeps your read (not the images) to check and refit its thresholds for this hospital."
)

HELP_ADMIN = (
    "\n\nFor administrators:\n"
    "/invite doctor [patient] – a one-time link for a doctor (optionally linked to a patient)\n"
    "/revoke <user id> – remove anyone's access\n"
    "/siterollback – go back to the site profile in use before the last change\n"
    "You can see and manage every patient, and you are told of every change of the site profile and of any "
    "bleed a doctor confirms on a scan HemoWatch called normal."
)


def invitation(role: str, patient_id: str | None, link: str, hours: float) -> str:
    what = f"a {role}" + (f" for patient {patient_id}" if patient_id else "")
    return (
        f"Invitation for {what}. Send this link to that person only; it works once and expires in "
        f"{hours:g} hours:\n{link}"
    )


INVITE_USAGE = "Use /invite doctor [patient] or /invite caregiver <patient>."
REVOKE_USAGE = "Use /revoke <user id>. You see user ids in /patients and when someone joins."
ADDPATIENT_USAGE = (
    "Use /addpatient <id> [name], for example /addpatient bed-12 Ann Smith. "
    "The id is 1-32 letters, digits, - or _."
)
THRESHOLDS_USAGE = "Use /thresholds <patient> to see the limits, or /thresholds <patient> <vital> <low> <high>."


def threshold_usage() -> str:
    possible = ", ".join(f"{name} {VITALS[name].possible}" for name in THRESHOLD_VITALS)
    return (
        "Use /thresholds <patient> <vital> <low> <high>, for example /thresholds bed-12 spo2 92 100.\n"
        f"Vitals and the limits they can have: {possible}. The low limit must be below the high one; "
        "write - to keep the standard limit on one side."
    )


def threshold_refused(reason: str) -> str:
    return f"{reason} The limits are unchanged."


def thresholds(patient_id: str, lines: list[str]) -> str:
    body = "\n".join(lines) if lines else "No limits set; the standard rules apply."
    return f"Alert limits for patient {patient_id}:\n{body}"


def status_heading(patient_id: str, name: str) -> str:
    return f"Patient {patient_id} ({clip(name, NAME_MAX)})"


NO_VITALS = "No vital signs received yet."


def latest_vitals(age: str, values: str) -> str:
    return f"Latest vital signs ({age}): {values}"


def open_alerts_heading(count: int) -> str:
    return "No open alerts." if count == 0 else f"Open alerts ({count}):"


def open_alert(
    severity: str, title: str, age: str, acknowledged_by: str | None = None, seen_by: Sequence[str] = ()
) -> str:
    """One open alert under /status, saying whether a doctor has taken it."""
    line = f"• {severity}: {title}, raised {age}"
    if acknowledged_by is not None:
        return f"{line}, acknowledged by {acknowledged_by}"
    seen = f", seen by {', '.join(seen_by)};" if seen_by else ","
    return f"{line}{seen} no doctor has acknowledged it yet"


def trend_caption(span: str) -> str:
    """The trend picture's caption; `span` as `bot.trend.span_words` gives it (`15 minutes`, `hour`)."""
    return (f"The last {span}: heart rate, SpO2 and blood pressure. Shaded green: where NEWS2 scores 0 (for blood "
            "pressure, the systolic).")


STATUS_USAGE = "Use /status <patient>. Send /patients to see the ids."
MUTE_USAGE = "Use /mute <patient> <minutes>, for example /mute bed-12 60. /mute bed-12 0 ends it."


def no_patient(patient_id: str) -> str:
    return f"I can't find patient {clip(patient_id, IDENTIFIER_MAX)} among yours. Send /patients to see the ids."


def not_your_patient_to_manage(patient_id: str) -> str:
    return f"Only patient {patient_id}'s doctors can do that."


def patient_exists(patient_id: str) -> str:
    return f"The id {patient_id} is already taken. Choose another one."


def patient_added(patient_id: str, name: str) -> str:
    return (
        f"Patient {patient_id} ({name}) is registered and you are their doctor. Their devices publish to "
        f"the topic …/patients/{patient_id}/vitals. Invite family or nurses with /invite caregiver {patient_id}."
    )


def name_shortened(limit: int) -> str:
    return f"Names are kept to {limit} characters, so the name is stored shortened, as above."


def revoked(telegram_id: int) -> str:
    return f"User {telegram_id} no longer has access."


def not_revocable(telegram_id: int) -> str:
    return f"User {clip(str(telegram_id), IDENTIFIER_MAX)} is not someone you can remove."


NO_PATIENTS = "You are not following any patient yet."


def patients_page(number: int, total: int) -> str:
    more = f" Send /patients {number + 1} for the next." if number < total else ""
    return f"Page {number} of {total}.{more}"


def patients_usage(total: int) -> str:
    if total == 1:
        return "Your list fits on one page: send /patients."
    return f"Use /patients, or /patients <page> for a page from 1 to {total}."


def muted(patient_id: str, minutes: int) -> str:
    return (
        f"Alerts about patient {patient_id} are paused for {minutes} minutes. "
        "Emergencies and escalations still come through."
    )


def unmuted(patient_id: str) -> str:
    return f"Alerts about patient {patient_id} are on again."


def mute_too_long(limit: int) -> str:
    return f"You can pause alerts for at most {limit} minutes."


ALREADY_ACKNOWLEDGED = "Already acknowledged."
ALREADY_RESOLVED = "This alert has already been resolved."
ALREADY_SEEN = "Already noted, thank you. A doctor still needs to acknowledge it."
ACKNOWLEDGED = "Thank you. The others can see you are on it."
SEEN = "Thank you. The others can see you have seen it; the doctors keep being alerted until one of them acknowledges."
ALERT_GONE = "This alert is no longer available to you."
STUDY_ACKNOWLEDGED = "Thank you. The others can see you are reading it."
READ_GONE = "This scan is not in the casebook, or its read is not yours to give."
READ_WORDS = {1: "bleed confirmed", 0: "no bleed"}


def read_recorded(label: int, previous: int | None) -> str:
    """The answer to a read button: what was recorded, and that a later read replaces it."""
    if previous is None:
        return (f"Recorded: {READ_WORDS[label]}. Thank you. If you change your mind, press the other button: "
                "the last read counts.")
    if previous == label:
        return f"Already recorded: {READ_WORDS[label]}. The last read counts."
    return f"Changed to {READ_WORDS[label]} (it was {READ_WORDS[previous]}). The last read counts."


ONCALL_USAGE = "Send /oncall on when you take over the head CT alerts, /oncall off when you hand them on."
ONCALL_ONLY_DOCTORS = "Only doctors go on call; as an administrator you get the head CT alerts when nobody is."
ONCALL_ON = "You are on call: head CT alerts come to you (and to any other doctor on call)."
ONCALL_OFF = "You are no longer on call."
NOBODY_ON_CALL = "Nobody is on call: head CT alerts go to every doctor, or to the administrators when there is none."
NO_STUDIES = "No head CT has been received from a scanner yet."
NOTHING_TO_ROLL_BACK = "Nothing to roll back to: no site profile has been adopted."


def on_call_list(names: list[str]) -> str:
    return "On call for head CT alerts:\n" + "\n".join(f"• {name}" for name in names)

ERROR = "Sorry, something went wrong on my side. Please try again in a moment."

NOT_UNDERSTOOD = "I did not understand that. Send /help to see what I can do."


# --- scan triage ----------------------------------------------------------------------------------

ANALYSING = "Analysing…"
WAITING_FOR_SLOT = "Analysing… waiting for another scan to finish first."
NO_IDENTIFIABLE_IMAGES = "Please do not send images that show a patient's name or other identifying details."
SCANS_UNAVAILABLE = "Scan triage is not available on this server."
SCAN_FAILED = "Sorry, the analysis failed on my side. Please try again in a moment."
SCAN_WRONG_FORMAT = (
    "I can't analyse this kind of file. Send a head CT as a photo, a PNG or JPEG file, "
    "a DICOM file or a ZIP of a DICOM series."
)
VERDICTS = {
    "hemorrhage": "Haemorrhage suspected",
    "no_hemorrhage": "No haemorrhage suspected",
    "not_assessable": "Not assessable",
}


def analysing(step: str) -> str:
    return f"Analysing… {step}"


def scan_too_big(size: int, limit: int) -> str:
    return f"This file is {size / 2**20:.0f} MB; I can analyse files of at most {limit / 2**20:.0f} MB."


def scan_too_big_for_telegram(limit: int) -> str:
    return (
        f"Telegram lets bots download files of at most {limit / 2**20:.0f} MB, and this one is larger. "
        "Send a smaller ZIP (only the slices of the head) or a single slice. "
        "An administrator can lift this limit by running a local Telegram Bot API server."
    )


def scan_unreadable(reason: str) -> str:
    return f"I could not analyse this scan. {reason}"


def scan_rate_limited(limit: int, window_s: float, wait_s: float) -> str:
    return (
        f"You have sent {limit} scans in the last {window_s / 60:.0f} minutes, the most I take. "
        f"Please send the next one in about {max(1, round(wait_s / 60))} minutes."
    )


def scan_verdict(result: StudyResult) -> str:
    """The verdict on one series, with the figures a clinician needs to weigh it."""
    lines = [VERDICTS[result.verdict], f"Scan: {result.series_label}"]
    if result.reason:
        lines.append(result.reason)
    if result.probability is not None:
        lines.append(f"Probability of haemorrhage {percent(result.probability)} (threshold {percent(result.threshold)}).")
    if result.suspected_type:
        lines.append(f"Suspected type: {result.suspected_type}.")
    if result.top_slice is not None and result.n_slices > 1:
        number, probability = result.top_slice
        lines.append(f"Most suspicious: slice {number} of {result.n_slices} ({percent(probability)}).")
    if result.n_slices > 1:
        lines.append(f"{result.n_assessable} of {result.n_slices} slices could be assessed.")
    lines.extend(f"Note: {warning}" for warning in result.warnings)
    return "\n".join(lines)


def site_line(profile_id: int | None, n_cases: int | None) -> str:
    """Which thresholds a verdict came from: the site profile's, or the shipped model's, not validated here."""
    if profile_id is None:
        return NOT_VALIDATED
    return f"Calibrated for this hospital on {n_cases} cases (site profile {profile_id})."


NOT_VALIDATED = "Not validated at this site: no site profile has been fitted on this hospital's own cases yet."


def scan_report(results: Sequence[StudyResult], readable: bool = False) -> str:
    """Every series' verdict, the model and its site profile, and (`readable`) the invitation to give a read."""
    model, profile = results[0].model, results[0].site_profile
    verdicts = "\n\n".join(scan_verdict(result) for result in results)
    site = site_line(None, None) if profile is None else site_line(profile.id, profile.n_cases)
    read = f"\n{READ_INVITATION}" if readable else ""
    return f"{verdicts}\n\nModel {model.name} {model.version}. {site}\n{DISCLAIMER}\n{NO_IDENTIFIABLE_IMAGES}{read}"


READ_INVITATION = "Once you know, press Bleed confirmed or No bleed: your read teaches HemoWatch this hospital's cases."


def overlay_caption(result: StudyResult) -> str:
    where = f"slice {result.top_slice[0]} of {result.n_slices}" if result.top_slice and result.n_slices > 1 else "the image"
    if result.heatmap_shows_region is False:
        return f"Heat-map on {where}, {result.series_label}: no single region stands out, so nothing is coloured."
    return f"Heat-map on {where}, {result.series_label}: the warmer, the more the model relied on that area."
