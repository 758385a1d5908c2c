"""Deterministic testing of the consensus core: lock-step harness and fault simulator."""
