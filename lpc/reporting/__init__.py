"""Reporting: run summaries, paired statistics, markdown tables, the README's results table,
W&B dashboards, provenance."""
