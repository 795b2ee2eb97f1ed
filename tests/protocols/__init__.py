"""Tests for the sans-I/O protocol engines (posthouse.protocols)."""
