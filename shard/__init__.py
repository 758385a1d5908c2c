"""A market's replica group: consensus core, storage, node runtime."""
