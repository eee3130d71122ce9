"""Budgets as pure logic: the compiled model, calendar windows and request matching (no I/O, no clock reads)."""
