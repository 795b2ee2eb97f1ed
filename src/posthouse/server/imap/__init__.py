"""The IMAP server: the session (session.py), its command groups and their helpers."""
