"""The asyncio server layer: listeners, connection loop, TLS, limits, connection records."""
