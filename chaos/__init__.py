"""Chaos testing of real processes: fault injection, history recording, checking."""
