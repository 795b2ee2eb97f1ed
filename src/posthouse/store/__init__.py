"""The mail store: maildrops and (later) the IMAP store."""
