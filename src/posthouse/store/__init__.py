"""The mail store: the POP3 maildrop interface, the mbox spool (``mbox/``), later the IMAP store."""
