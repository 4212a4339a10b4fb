"""The wording of alert messages (HTML), shared by the notifier and the Acknowledge button, and of the
service notices to the admins.

Under an alert, every copy lists who has seen it and who acknowledged it, and when it resolved (`with_responses`);
the lines are rendered afresh from the stored events on each edit, so all copies tell the same story."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from bot import vitals_text
from bot.telegram_limits import IDENTIFIER_MAX, MAX_TEXT, NAME_MAX, clip
from bot.texts import site_line
from core.notifications import (
    NEWS2_CONDITIONS,
    STUDY_CONDITION,
    AlertNotice,
    NoticeKind,
    ServiceEvent,
    ServiceNotice,
    Severity,
)
from inference.percent import percent
from store.alerts import AlertEvent, AlertState

SEVERITY_MARK = {Severity.WARNING: "🟡 Warning", Severity.URGENT: "🟠 Urgent", Severity.EMERGENCY: "🔴 EMERGENCY"}


def clock_time(at: datetime | float) -> str:
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).strftime("%H:%M UTC")


def notice_text(notice: AlertNotice) -> str:
    """One alert message: severity, patient, what happened, the values, NEWS2 (only its parts under a NEWS2 alert,
    whose title gives the score) and when (a long patient name cut short, so that it fits Telegram's limits with
    room for "Acknowledged by")."""
    if notice.condition == STUDY_CONDITION:
        return study_notice_text(notice)
    patient = f"{escape(clip(notice.patient_name, NAME_MAX))} ({escape(notice.patient_id)})"
    if notice.kind is NoticeKind.RESOLVED:
        return f"✅ Resolved: {escape(notice.title)} – {patient}"
    lines = [f"<b>{SEVERITY_MARK[notice.severity]}</b> – {patient}", f"<b>{escape(notice.title)}</b>"]
    if notice.values:
        lines.append(escape(vitals_text.vitals_line(notice.values)))
    if notice.news2 is not None and notice.condition in NEWS2_CONDITIONS:  # the title gives the score
        lines.append(escape(f"Points from {vitals_text.news2_parts(notice.news2_components)}"))
    elif notice.news2 is not None:
        lines.append(escape(vitals_text.news2(notice.news2, notice.news2_components)))
    lines.append(f"Raised at {clock_time(notice.raised_at)}")
    if notice.kind is NoticeKind.ESCALATED:  # from the second level on, the admins get it too
        lines.append(escalation_line(notice.escalation_level == 2, "No doctor has acknowledged this yet"))
    if notice.kind is NoticeKind.REOPENED:
        lines.append("↩️ Back again soon after it resolved: this is the same alert, open again.")
    return "\n".join(lines)


def study_notice_text(notice: AlertNotice) -> str:
    """The caption of a flagged head CT from a scanner: verdict, probability and threshold, model, the study
    (accession and time, when shown), the sending scanner and how long ago its last slice arrived, and the site
    profile the verdict came from. What comes from the scanner's headers is cut short, so that it fits a caption
    with room for "Acknowledged by"."""
    facts = {key: clip(value, IDENTIFIER_MAX) if isinstance(value, str) else value
             for key, value in notice.values.items()}
    lines = [f"<b>{SEVERITY_MARK[notice.severity]}</b> – {escape(notice.title)}"]
    lines.append(f"Probability {percent(facts['probability'])} (threshold {percent(facts['threshold'])}), "
                 f"model {escape(str(facts['model_version']))}")
    study = []
    if facts.get("accession"):
        study.append(f"Accession <b>{escape(facts['accession'])}</b>")
    if facts.get("study_time"):
        study.append(f"study time {escape(facts['study_time'])}")
    if study:
        lines.append(", ".join(study))
    lines.append(f"From {escape(facts['ae_title'])}; last slice received {facts['since_last_slice_s']:.0f} s "
                 "before this alert")
    lines.append(escape(site_line(facts.get("site_profile"), facts.get("site_profile_cases"))))
    if facts.get("heatmap_shows_region") is False:
        lines.append("No single region stands out on the heat-map.")
    if notice.kind is NoticeKind.ESCALATED:  # from the first level on, every doctor and the admins get it
        lines.append(escalation_line(notice.escalation_level == 1, "Nobody is reading it yet"))
    lines.append("Decision support, not a diagnosis: read the study.")
    return "\n".join(lines)


def escalation_line(widened: bool, waiting: str) -> str:
    """The line of an escalated alert: whether it now reaches more people (`widened`), or is a reminder to the
    same ones."""
    if widened:
        return f"⏫ {waiting}, so it now goes to more people."
    return f"⏫ Reminder: {waiting[0].lower()}{waiting[1:]}."


def who(event: AlertEvent) -> str:
    """The person behind a response, with their role for the patient (plain text)."""
    name = event.actor_name or "someone"
    return name if event.actor_role is None else f"{name} ({event.actor_role.value})"


def acknowledgement(responses: Sequence[AlertEvent]) -> AlertEvent | None:
    """The clinical acknowledgement among an alert's responses, if it has one."""
    return next((event for event in responses if event.state == AlertState.ACKNOWLEDGED), None)


def with_responses(text: str, responses: Sequence[AlertEvent], resolved_at: float | None = None) -> str:
    """An alert message with a line for each person who has seen or acknowledged it (`alerts.responses`), and
    when it resolved (`resolved_at`, None while open)."""
    lines = [
        f"{'✅ Acknowledged' if event.state == AlertState.ACKNOWLEDGED else '👀 Seen'} by {escape(who(event))} "
        f"at {clock_time(event.at)}"
        for event in responses
    ]
    if resolved_at is not None:
        lines.append(f"✅ Resolved at {clock_time(resolved_at)}")
    elif responses and acknowledgement(responses) is None:
        lines.append("⏳ No doctor has acknowledged it yet.")
    return f"{text}\n\n" + "\n".join(lines) if lines else text


def service_text(notice: ServiceNotice) -> str:
    """A service notice to the admins: what fails since when and why, what it means for alerts, or that it ended."""
    if notice.event is ServiceEvent.STORE_FAILING:
        return (
            f"<b>🔴 Vitals are not being stored</b>\nThe database has been failing since {clock_time(notice.since)} "
            f"({escape(notice.reason)}). Readings wait at the MQTT broker and are stored once it works again; until "
            "then no vitals alert can be raised. Check the server's disk and database file."
        )
    until = notice.until or notice.since
    return (
        f"✅ <b>Vitals are stored again</b>\nThe database failed from {clock_time(notice.since)} to "
        f"{clock_time(until)} ({escape(notice.reason)}). The readings kept at the broker meanwhile are being stored "
        "and judged now."
    )


def short_notice_text(notice: AlertNotice) -> str:
    """A short plain form of an alert, sent when Telegram refuses the full one: what, whose, where to see more."""
    title = clip(notice.title, NAME_MAX)
    resolved = notice.kind is NoticeKind.RESOLVED
    head = f"✅ Resolved: {title}" if resolved else f"{SEVERITY_MARK[notice.severity]} – {title}"
    if notice.condition == STUDY_CONDITION:
        return f"{head}\nThe full alert could not be shown here; send /studies to see the study."
    patient_id = clip(notice.patient_id, IDENTIFIER_MAX)
    return f"{head} – patient {patient_id}\nThe full alert could not be shown here; send /status {patient_id}."


def undelivered_text(notice: AlertNotice, user_ids: list[int], reason: str) -> str:
    """For the admins (plain text): an alert Telegram refused for some recipients, even in its short form."""
    patient_id = clip(notice.patient_id, IDENTIFIER_MAX)
    whose = "a head CT" if notice.condition == STUDY_CONDITION else f"patient {patient_id}"
    users = ", ".join(str(user_id) for user_id in user_ids)
    return clip(
        f"⚠️ Alert {notice.alert_id} ({clip(notice.title, NAME_MAX)}, {whose}) did not reach user id {users}: "
        f"Telegram refused it, also in a short plain form ({clip(reason, NAME_MAX)}). They do not know about it. "
        "On the server, hemowatch admin alerts lists the open alerts and who heard them.",
        MAX_TEXT,
    )
