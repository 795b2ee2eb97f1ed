"""The command grammar (commands.py): RFC examples of every command and extension."""

from __future__ import annotations

import datetime as dt

import pytest

from posthouse.protocols.imap import arguments, commands, search, seqset
from posthouse.protocols.imap.reader import Refused
from tests.protocols.imap.reading import read_all


def parse(line: bytes) -> commands.Command:
    events = read_all(line + b"\r\n")
    assert len(events) == 1, events
    command = events[0]
    assert isinstance(command, commands.Command), command
    return command


def refusal(line: bytes) -> Refused:
    events = read_all(line + b"\r\n")
    assert len(events) == 1, events
    assert isinstance(events[0], Refused), events[0]
    return events[0]


@pytest.mark.parametrize(
    "name", ["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT", "IDLE"]
)
def test_commands_without_arguments(name: str) -> None:
    command = parse(b"a " + name.lower().encode())
    assert command.name == name
    assert command.arguments == arguments.NoArguments()
    assert refusal(b"a " + name.encode() + b" extra").response.status == "BAD"


def test_namespace_and_expunge() -> None:
    assert parse(b"a NAMESPACE").name == "NAMESPACE"
    assert parse(b"a EXPUNGE").arguments == arguments.NoArguments()
    # RFC 4315 §2.1
    uid_expunge = parse(b"A003 UID EXPUNGE 3000:3002")
    assert uid_expunge.uid
    assert uid_expunge.arguments == arguments.Expunge(seqset.parse("3000:3002"))


def test_login_with_atoms_quoted_strings_and_literals() -> None:
    assert parse(b"a001 LOGIN SMITH SESAME").arguments == arguments.Login("SMITH", "SESAME")
    assert parse(b'a LOGIN "j d" "p\\\\w"').arguments == arguments.Login("j d", "p\\w")
    assert "SESAME" not in repr(parse(b"a001 LOGIN SMITH SESAME"))
    assert refusal(b"a LOGIN onlyuser").response.status == "BAD"
    assert refusal(b'a LOGIN "unterminated pw').response.status == "BAD"


def test_authenticate_with_and_without_initial_response() -> None:
    # RFC 4959 §3 example.
    command = parse(b"a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=")
    assert command.arguments == arguments.Authenticate("PLAIN", "dGVzdAB0ZXN0AHRlc3Q=")
    assert parse(b"a AUTHENTICATE plain").arguments == arguments.Authenticate("PLAIN")
    assert parse(b"a AUTHENTICATE PLAIN =").arguments == arguments.Authenticate("PLAIN", "")
    assert refusal(b"a AUTHENTICATE PLAIN not*base64").response.status == "BAD"


def test_enable_and_id() -> None:
    # RFC 5161 §3.1, RFC 2971 §3.1
    assert parse(b"t2 ENABLE CONDSTORE X-GOOD-IDEA").arguments == arguments.Enable(
        ("CONDSTORE", "X-GOOD-IDEA")
    )
    assert refusal(b"t2 ENABLE").response.status == "BAD"
    command = parse(
        b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")'
    )
    assert command.arguments == arguments.Id(
        (("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited"))
    )
    assert parse(b"a ID NIL").arguments == arguments.Id(None)
    assert parse(b'a ID ("os" NIL)').arguments == arguments.Id((("os", None),))
    too_many = b"a ID (" + b" ".join(b'"k%d" "v"' % i for i in range(31)) + b")"
    assert "30" in refusal(too_many).response.text
    assert refusal(b'a ID ("' + b"n" * 31 + b'" "v")').response.status == "BAD"


def test_select_examine_and_their_parameters() -> None:
    assert parse(b"A142 SELECT INBOX").arguments == arguments.Select("INBOX")
    assert parse(b"a EXAMINE inBox").arguments == arguments.Select("INBOX")
    assert parse(b"a SELECT INBOX.Sent").arguments == arguments.Select("INBOX.Sent")
    assert parse(b"a SELECT INBOX (CONDSTORE)").arguments == arguments.Select("INBOX", True)
    # RFC 7162 §3.2.5 examples.
    first = parse(b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))")
    assert first.arguments == arguments.Select(
        "INBOX",
        qresync=arguments.Qresync(67890007, 20050715194045000, seqset.parse("41,43:211,214:541")),
    )
    second = parse(
        b"B02 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        b"(5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976)))"
    )
    assert isinstance(second.arguments, arguments.Select)
    qresync = second.arguments.qresync
    assert qresync is not None and qresync.seq_match is not None
    assert str(qresync.seq_match[0]) == "5000,7500,9000,9990:9999"
    assert parse(b"a SELECT x (QRESYNC (1 2))").arguments == arguments.Select(
        "x", qresync=arguments.Qresync(1, 2)
    )
    assert refusal(b"a SELECT x (QRESYNC (1 2 1:*))").response.status == "BAD"
    assert refusal(b"a SELECT x (FROB)").response.status == "BAD"


def test_mailbox_management() -> None:
    assert parse(b"A003 CREATE owatagusiam/").arguments == arguments.Create("owatagusiam/")
    # RFC 6154 §5.2
    assert parse(b't1 CREATE "Important Messages" (USE (\\Important))').arguments == (
        arguments.Create("Important Messages", ("\\Important",))
    )
    assert parse(b"A683 DELETE blurdybloop").arguments == arguments.MailboxName("blurdybloop")
    assert parse(b"A683 RENAME blurdybloop sarasoop").arguments == arguments.Rename(
        "blurdybloop", "sarasoop"
    )
    assert parse(b"A002 SUBSCRIBE #news.comp.mail.mime").arguments == arguments.MailboxName(
        "#news.comp.mail.mime"
    )
    assert parse(b"a UNSUBSCRIBE &U,BTFw-").arguments == arguments.MailboxName("&U,BTFw-")
    assert refusal(b'a CREATE "\xff"').response.text.endswith("not valid UTF-8")


def test_list_lsub_and_their_extensions() -> None:
    assert parse(b'A101 LIST "" ""').arguments == arguments.ListMailboxes("", ("",))
    assert parse(b"A202 LIST ~/Mail/ %").arguments == arguments.ListMailboxes("~/Mail/", ("%",))
    assert parse(b'A682 LIST "" *').arguments == arguments.ListMailboxes("", ("*",))
    assert parse(b'A002 LSUB "#news." "comp.mail.*"').arguments == arguments.ListMailboxes(
        "#news.", ("comp.mail.*",)
    )
    # RFC 5258 §5 and RFC 5819 §5
    extended = parse(b'A04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    assert extended.arguments == arguments.ListMailboxes(
        "", ("%",), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}), frozenset({"CHILDREN"}), (), True
    )
    status = parse(b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))')
    assert isinstance(status.arguments, arguments.ListMailboxes)
    assert status.arguments.status_items == ("MESSAGES", "UNSEEN")
    several = parse(b'a LIST "" ("INBOX" "Drafts" Sent*)')
    assert isinstance(several.arguments, arguments.ListMailboxes)
    assert several.arguments.patterns == ("INBOX", "Drafts", "Sent*")


def test_status() -> None:
    assert parse(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)").arguments == arguments.Status(
        "blurdybloop", ("UIDNEXT", "MESSAGES")
    )
    assert refusal(b"a STATUS x ()").response.status == "BAD"
    assert "FROB" in refusal(b"a STATUS x (FROB)").response.text


RFC3501_APPEND = (
    b"A003 APPEND saved-messages (\\Seen) {310}\r\n"
    + b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    + b"x" * (310 - 45)
    + b"\r\n"
)


def test_append_and_multiappend() -> None:
    events = read_all(RFC3501_APPEND)
    command = events[-1]
    assert isinstance(command, commands.Command) and isinstance(command.arguments, arguments.Append)
    (one,) = command.arguments.messages
    assert one.flags == ("\\Seen",) and one.date is None and len(one.data) == 310
    # RFC 3502 §6.3.11: two messages, the second with a date.
    multi = read_all(
        b"A003 APPEND saved-messages (\\Seen) {3}\r\nabc"
        b' (\\Seen $x) " 7-Feb-1994 22:43:04 -0800" {2}\r\nde\r\n'
    )
    command = multi[-1]
    assert isinstance(command, commands.Command) and isinstance(command.arguments, arguments.Append)
    first, second = command.arguments.messages
    assert first.data == b"abc" and second.data == b"de"
    assert second.flags == ("\\Seen", "$x")
    assert second.date == dt.datetime(
        1994, 2, 7, 22, 43, 4, tzinfo=dt.timezone(-dt.timedelta(hours=8))
    )
    # RFC 6855 §4: UTF8 (literal8)
    utf8 = read_all(b"a APPEND INBOX UTF8 (~{2+}\r\n\xc3\xa9)\r\n")[-1]
    assert isinstance(utf8, commands.Command) and isinstance(utf8.arguments, arguments.Append)
    assert utf8.arguments.messages[0].binary


def test_append_without_a_literal_or_with_a_bad_date_is_bad() -> None:
    assert refusal(b'a APPEND INBOX "message text"').response.status == "BAD"
    assert refusal(b'a APPEND INBOX "32-Feb-1994 22:43:04 -0800" {0+}\r\n').response.status == (
        "BAD"
    )
    assert refusal(b'a APPEND INBOX "7-Feb-1994 22:43:04 -0800" {0+}\r\n').response.status == (
        "BAD"  # date-day-fixed: a one-digit day has a leading space
    )


def test_store_forms() -> None:
    store = parse(b"A003 STORE 2:4 +FLAGS (\\Deleted)")
    assert store.arguments == arguments.Store(seqset.parse("2:4"), "add", False, ("\\Deleted",))
    assert parse(b"a STORE 1 -FLAGS.SILENT \\seen \\FLAGGED").arguments == arguments.Store(
        seqset.parse("1"), "remove", True, ("\\Seen", "\\Flagged")
    )
    assert parse(b"a STORE 1 FLAGS ()").arguments == arguments.Store(
        seqset.parse("1"), "replace", False, ()
    )
    # RFC 7162 §3.1.3 example
    conditional = parse(b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)")
    assert isinstance(conditional.arguments, arguments.Store)
    assert conditional.arguments.unchanged_since == 320162338
    assert refusal(b"a STORE 1 XFLAGS (\\Seen)").response.status == "BAD"
    assert refusal(b"a STORE 0 FLAGS (\\Seen)").response.status == "BAD"


def test_copy_move_and_uid_variants() -> None:
    assert parse(b"A003 COPY 2:4 MEETING").arguments == arguments.Transfer(
        seqset.parse("2:4"), "MEETING"
    )
    move = parse(b"a UID MOVE 42:69 foo")  # RFC 6851 §4.4
    assert move.uid and move.name == "MOVE"
    assert parse(b"A999 UID FETCH 4827313:4828442 FLAGS").uid
    assert parse(b"a FETCH $ (UID)").arguments.numbers.saved  # type: ignore[union-attr]
    assert refusal(b"a UID LOGIN x y").response.status == "BAD"


def test_search_forms() -> None:
    # RFC 3501 §6.4.4 examples
    flagged = parse(b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert isinstance(flagged.arguments, search.SearchRequest)
    assert flagged.arguments.key == search.And(
        (
            search.Flag("\\Flagged"),
            search.Date(False, "since", dt.date(1994, 2, 1)),
            search.Not(search.Header("FROM", "Smith")),
        )
    )
    literal = read_all(b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX\r\n")[-1]
    assert isinstance(literal, commands.Command)
    assert literal.arguments == search.SearchRequest(search.Text("XXXXXX"), "UTF-8")
    # RFC 4731 §3.1 and RFC 5182
    esearch = parse(b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert isinstance(esearch.arguments, search.SearchRequest)
    assert esearch.arguments.returns == frozenset({"MIN", "COUNT"})
    empty = parse(b"a SEARCH RETURN () ALL")
    assert empty.arguments == search.SearchRequest(search.All(), returns=frozenset({"ALL"}))
    assert refusal(b"a SEARCH RETURN (FROB) ALL").response.status == "BAD"
    bad_charset = refusal(b"a SEARCH CHARSET KOI8-R ALL")
    assert bad_charset.response.to_bytes() == (
        b"a NO [BADCHARSET (UTF-8 US-ASCII)] Charset KOI8-R is not supported for searching\r\n"
    )
    assert refusal(b"a SEARCH").response.status == "BAD"
    assert refusal(b"a SEARCH FROB").response.status == "BAD"


def test_sort_and_thread() -> None:
    # RFC 5256 §3 and §5 examples
    sort = parse(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL")
    assert sort.arguments == arguments.Sort(
        (arguments.SortCriterion("SUBJECT"), arguments.SortCriterion("DATE", True)),
        search.SearchRequest(search.All(), "UTF-8"),
    )
    assert parse(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994").name == "SORT"
    assert parse(b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"').name == "SORT"
    thread = parse(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000")
    assert thread.arguments == arguments.Thread(
        "ORDEREDSUBJECT",
        search.SearchRequest(search.Date(False, "since", dt.date(2000, 3, 5)), "UTF-8"),
    )
    assert parse(b'A284 THREAD REFERENCES US-ASCII TEXT "gewp"').name == "THREAD"
    assert refusal(b"a THREAD FROB UTF-8 ALL").response.status == "BAD"
    assert refusal(b"a SORT () UTF-8 ALL").response.status == "BAD"
    assert refusal(b"a SORT (DATE) ALL").response.status == "NO"  # the charset is required
    assert refusal(b"a SORT (FROB) UTF-8 ALL").response.status == "BAD"


def test_compress() -> None:
    assert parse(b"a COMPRESS DEFLATE").arguments == arguments.Compress("DEFLATE")


def test_rfc_4466_parameter_lists_are_never_empty() -> None:
    assert refusal(b"a SELECT INBOX ()").response.status == "BAD"
    assert refusal(b"a FETCH 1 (FLAGS) ()").response.status == "BAD"
    assert refusal(b"a SELECT INBOX (CONDSTORE )").response.status == "BAD"


def test_partitions_and_reconstruct_as_cyrus_takes_them() -> None:
    """Chapter 12.5.9 / 12.5.5: the administrator's partition argument (Cyrus 3.6 accepts
    ``CREATE name part`` and RFC 4466 create-params ``(PARTITION part)``; ``RENAME a b
    part``) and ``RECONSTRUCT mailbox [RECURSIVE]``."""
    assert parse(b"a CREATE user.bob.x fast").arguments == arguments.Create(
        "user.bob.x", (), "fast"
    )
    assert parse(b"a CREATE user.bob.x (PARTITION fast)").arguments == arguments.Create(
        "user.bob.x", (), "fast"
    )
    assert parse(b"a CREATE x (USE (\\Sent) PARTITION p2)").arguments == arguments.Create(
        "x", ("\\Sent",), "p2"
    )
    assert parse(b"a RENAME user.bob user.bob p2").arguments == arguments.Rename(
        "user.bob", "user.bob", "p2"
    )
    assert parse(b"a RECONSTRUCT user.bob RECURSIVE").arguments == arguments.Reconstruct(
        "user.bob", True
    )
    assert parse(b"a RECONSTRUCT user.bob").arguments == arguments.Reconstruct("user.bob")
    assert refusal(b"a CREATE x (PARTITION)").response.status == "BAD"
    assert refusal(b"a RECONSTRUCT x NOW").response.status == "BAD"
    assert refusal(b"a RENAME a b c d").response.status == "BAD"
