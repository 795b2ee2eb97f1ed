"""Each administrative operation once, for every front end (the CLIs, later a web console).

Imports point downward: ``cli, web -> admin -> app -> server -> {protocols, mta, store, auth}``.
An operation takes plain values (paths, names, passwords, parsed text), does its work, and
returns a value or raises one of the typed errors of :mod:`posthouse.admin.errors`; it never
prints, prompts or chooses an exit status.  The modules:

* :mod:`~posthouse.admin.users` -- posthouse's users: add, delete, list, login passwords,
  mail service types (``posthouse user``, ``posthouse mailusradm``);
* :mod:`~posthouse.admin.mailauth` -- the mailauth database: create it, import mail passwords,
  change one (``posthouse mailauth``), and hand its files to the daemon's account;
* :mod:`~posthouse.admin.popcv` -- importing an MH POP file (``posthouse popcv``);
* :mod:`~posthouse.admin.setup` and :mod:`~posthouse.admin.setup_answers` -- the worksheet
  answers, checking, writing the configuration and reloading the daemon (``posthouse setup``);
* :mod:`~posthouse.admin.data` -- the data directory on first start (demo user, aliases).

This package imports nothing at its own import, so a tool loads only what it uses.
"""
