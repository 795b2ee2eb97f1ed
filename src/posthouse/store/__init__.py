"""The mail store: the POP3 maildrop interface, the mbox spool (``mbox/``) and the IMAP store.

The IMAP store (chapter 12.5): pure logic in ``names.py``, ``uidset.py``, ``acl.py``,
``patterns.py``, ``subscriptions.py``, ``flags.py`` and ``content.py``; the backend interface
in ``backend.py``; the file-system backend in ``fs/``; the one service every protocol and
tool calls in ``service.py`` (``MailStore``) with one user's view in ``session.py``
(``UserSession``), rules in ``policy.py``, errors in ``errors.py``; POP3 over an IMAP INBOX
in ``inbox_maildrop.py``.
"""
