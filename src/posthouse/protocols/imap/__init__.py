"""The sans-I/O IMAP4rev1 protocol pieces (RFC 3501 and the extensions DESIGN.md lists)."""
