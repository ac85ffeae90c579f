"""Compliance: what shows a deployment was controlled: signatures, audit trail and evidence."""
