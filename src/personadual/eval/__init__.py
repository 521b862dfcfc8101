"""Evaluation: predictions through the shared engine, metrics, reports."""
