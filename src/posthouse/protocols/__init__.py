"""Sans-I/O protocol engines: bytes in, events and replies out; no sockets, files or clock."""
