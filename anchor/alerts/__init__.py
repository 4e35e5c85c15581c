"""Alerts to loan officers: lifecycle, Standard Webhooks messages, a durable outbox, delivery.

    reconciler conditions ──apply_conditions──► alerts + alert_transitions   (lifecycle)
                                                        │ route (same DB, one transaction)
                                                        ▼
                                   webhook_outbox ──Deliverer.step──► receivers (HTTP POST)

See docs/alerts.md for the message format, signatures, retry schedule and filters.
"""
