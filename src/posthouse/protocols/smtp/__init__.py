"""SMTP, submission and LMTP engine (RFC 5321, RFC 6409, RFC 2033)."""
