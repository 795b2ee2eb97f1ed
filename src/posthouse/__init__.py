"""posthouse: a complete mail system (MTA, POP3, IMAP4) in Python."""

__version__ = "0.1.0"
