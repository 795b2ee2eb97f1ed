"""The mbox spool (``spool/mail/USER``, mboxrd files shared with other Unix mail programs).

Each concern has one module:

* :mod:`~posthouse.store.mbox.locking` -- opening a mailbox safely and locking it
  (``lockf``, dot-lock or both: :class:`~posthouse.store.mbox.locking.LockSettings`), and
  which user names can be spool files;
* :mod:`~posthouse.store.mbox.mboxrd` -- the format both ways (``From_`` line, quoting);
* :mod:`~posthouse.store.mbox.append` -- one batch appended under one lock, one fsync;
* :mod:`~posthouse.store.mbox.writer` -- group commit: concurrent appends to a mailbox
  share its lock and fsync;
* :mod:`~posthouse.store.mbox.scan`, :mod:`~posthouse.store.mbox.index`,
  :mod:`~posthouse.store.mbox.rewrite` and :mod:`~posthouse.store.mbox.maildrop` -- the
  POP3 maildrop: parsing, the persistent index, deleting in place, the session.

Errors are the store's own (a lock timeout, an unsafe mailbox, an ``OSError``, a bad
name); the MTA's mbox agent (:mod:`posthouse.mta.agents.mbox`) and the POP3 maildrop
interface (:mod:`posthouse.store.maildrop`) say what they mean to their clients.
"""
