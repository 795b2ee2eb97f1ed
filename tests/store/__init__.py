"""Tests for posthouse.store."""
