"""The wording of alert messages (HTML), shared by the notifier and the Acknowledge button, and of the
service notices to the admins.

Under an alert, every copy lists who has seen it and who acknowledged it (`with_responses`); the lines are
rendered afresh from the stored events on each edit, so all copies tell the same story."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from bot import vitals_text
from bot.texts import site_line
from core.notifications import STUDY_CONDITION, AlertNotice, NoticeKind, ServiceEvent, ServiceNotice, Severity
from store.alerts import AlertEvent, AlertState

SEVERITY_MARK = {Severity.WARNING: "🟡 Warning", Severity.URGENT: "🟠 Urgent", Severity.EMERGENCY: "🔴 EMERGENCY"}


def clock_time(at: datetime | float) -> str:
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).strftime("%H:%M UTC")


def notice_text(notice: AlertNotice) -> str:
    """One alert message: severity, patient, what happened, the values, NEWS2 and when."""
    if notice.condition == STUDY_CONDITION:
        return study_notice_text(notice)
    patient = f"{escape(notice.patient_name)} ({escape(notice.patient_id)})"
    if notice.kind is NoticeKind.RESOLVED:
        return f"✅ Resolved: {escape(notice.title)} – {patient}"
    lines = [f"<b>{SEVERITY_MARK[notice.severity]}</b> – {patient}", f"<b>{escape(notice.title)}</b>"]
    if notice.values:
        lines.append(escape(vitals_text.vitals_line(notice.values)))
    if notice.news2 is not None:
        lines.append(escape(vitals_text.news2(notice.news2, notice.news2_components)))
    lines.append(f"Raised at {clock_time(notice.raised_at)}")
    if notice.kind is NoticeKind.ESCALATED:
        lines.append("⏫ No doctor has acknowledged this yet, so it now goes to more people.")
    if notice.kind is NoticeKind.REOPENED:
        lines.append("↩️ Back again soon after it resolved: this is the same alert, open again.")
    return "\n".join(lines)


def study_notice_text(notice: AlertNotice) -> str:
    """The caption of a flagged head CT from a scanner: verdict, probability and threshold, model, the study
    (accession and time, when shown), the sending scanner and how long ago its last slice arrived, and the site
    profile the verdict came from."""
    facts = notice.values
    lines = [f"<b>{SEVERITY_MARK[notice.severity]}</b> – {escape(notice.title)}"]
    lines.append(f"Probability {facts['probability']:.2f} (threshold {facts['threshold']:.2f}), "
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
    if notice.kind is NoticeKind.ESCALATED:
        lines.append("⏫ Nobody is reading it yet, so it now goes to more people.")
    lines.append("Decision support, not a diagnosis: read the study.")
    return "\n".join(lines)


def who(event: AlertEvent) -> str:
    """The person behind a response, with their role for the patient (plain text)."""
    name = event.actor_name or "someone"
    return name if event.actor_role is None else f"{name} ({event.actor_role.value})"


def acknowledgement(responses: Sequence[AlertEvent]) -> AlertEvent | None:
    """The clinical acknowledgement among an alert's responses, if it has one."""
    return next((event for event in responses if event.state == AlertState.ACKNOWLEDGED), None)


def with_responses(text: str, responses: Sequence[AlertEvent]) -> str:
    """An alert message with a line for each person who has seen or acknowledged it (`alerts.responses`)."""
    if not responses:
        return text
    lines = [
        f"{'✅ Acknowledged' if event.state == AlertState.ACKNOWLEDGED else '👀 Seen'} by {escape(who(event))} "
        f"at {clock_time(event.at)}"
        for event in responses
    ]
    if acknowledgement(responses) is None:
        lines.append("⏳ No doctor has acknowledged it yet.")
    return f"{text}\n\n" + "\n".join(lines)


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
