"""The mbox spool (``spool/mail/USER``): locking, the mboxrd format, appends, the POP3 maildrop."""
