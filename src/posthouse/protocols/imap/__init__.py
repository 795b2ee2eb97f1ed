"""The sans-I/O IMAP4rev1 protocol pieces (RFC 3501 and the extensions DESIGN.md lists).

Input: ``reader`` frames octets into commands (literals, continuation requests, limits)
using ``cursor`` (the lexical level) and ``commands`` (the command grammar; the argument
types in ``arguments``), with ``fetchatt`` (FETCH attributes), ``search`` (SEARCH keys
and their evaluation) and ``seqset`` (sequence sets).  Output: ``response`` writes
values, status and data responses and response codes.  Messages: ``message`` (MIME
structure with offsets), ``envelope``, ``bodystructure``, ``sections`` (BODY[...] and
BINARY) and ``text`` (decoded text for SEARCH).  ``sort``, ``subject`` and ``thread``
implement RFC 5256; ``mutf7`` mailbox-name encoding; ``view`` the message view the store
implements; ``errors`` the refusal every piece raises.
"""
