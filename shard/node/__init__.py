"""Replica node runtime: trio drives the consensus core, storage and engine."""
