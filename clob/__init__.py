"""Pure, deterministic matching engine: no I/O, no clock, no randomness."""
