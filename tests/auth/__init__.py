"""Tests for posthouse.auth."""
