"""Shared test settings: deterministic Hypothesis runs (no wall clock, no example database)."""

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=50)
settings.load_profile("ci")
