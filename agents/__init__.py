"""Faust agents (thin: they hand micro-batches to :mod:`app.processor`)."""
