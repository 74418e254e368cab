"""Fault injection: real processes, real signals, real servers (issue 5)."""
