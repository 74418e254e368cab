"""Signed webhooks: one POST per state change of a customer's exports (and schedules), delivered in order."""
