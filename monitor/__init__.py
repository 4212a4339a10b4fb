"""The vitals monitor: MQTT ingest, alert engine with NEWS2, notification outbox and simulated devices.

Public pieces for the composition root: `monitor.vitals_monitor.VitalsMonitor` (runs everything against a
`Notifier`) and `monitor.broker.EmbeddedBroker` (an in-process MQTT broker when no external one is configured).
"""
