"""Outbound I/O: the pooled HTTP client to providers and the provider credentials it injects."""
