"""Execution concerns shared by all families: device and dtype, batching."""
