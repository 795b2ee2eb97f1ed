"""Delivery agents, each a transaction with a result per recipient."""
