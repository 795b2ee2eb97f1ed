"""THREAD (RFC 5256 §4-§5): ORDEREDSUBJECT and REFERENCES over message views.

Both return a forest of `Node` values; `format_threads` writes it in the RFC 5256 §4
thread-list syntax ("(3 6 (4 23)(44 7 96))"), numbered by sequence number or UID.
Dates are RFC 5256 §2.2 sent dates, ties broken by sequence number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from posthouse.protocols.imap.sort import sort_date
from posthouse.protocols.imap.subject import base_subject
from posthouse.protocols.imap.view import MessageView

_MSG_ID: Final = re.compile(r"<([^<>\s]+)>")


@dataclass(eq=False)
class Node:
    """A thread container: a message, or a dummy (``message`` None) holding children."""

    message: MessageView | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def add(self, child: Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def is_ancestor_of(self, other: Node) -> bool:
        node: Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def first_message(self) -> MessageView | None:
        """The node's message, or (for a dummy) its first child's (RFC 5256 §4 step 5)."""
        if self.message is not None:
            return self.message
        return self.children[0].first_message() if self.children else None


def _order(node: Node) -> tuple[float, int]:
    message = node.first_message()
    if message is None:
        return (0.0, 0)
    return (sort_date(message), message.seq)


def _sort_tree(nodes: list[Node]) -> None:
    for node in nodes:
        _sort_tree(node.children)
    nodes.sort(key=_order)


def _subject(message: MessageView | None) -> tuple[str, bool]:
    if message is None:
        return "", False
    subjects = message.header_values("Subject")
    return base_subject(subjects[0] if subjects else "")


def ordered_subject(messages: Iterable[MessageView]) -> list[Node]:
    """RFC 5256 §4 ORDEREDSUBJECT: group by base subject, each group's first message
    (by sent date) is the parent of the others, groups ordered by that first date."""
    groups: dict[str, list[MessageView]] = {}
    for message in messages:
        groups.setdefault(_subject(message)[0], []).append(message)
    roots: list[Node] = []
    for members in groups.values():
        members.sort(key=lambda m: (sort_date(m), m.seq))
        root = Node(members[0])
        for member in members[1:]:
            root.add(Node(member))
        roots.append(root)
    roots.sort(key=_order)
    return roots


def _message_ids(text: str) -> list[str]:
    return _MSG_ID.findall(text)


def references(messages: Iterable[MessageView]) -> list[Node]:
    """RFC 5256 §4 REFERENCES (the algorithm of Jamie Zawinski's threading)."""
    table: dict[str, Node] = {}
    ordered = sorted(messages, key=lambda m: m.seq)
    # Step 1: containers and links.
    for message in ordered:
        ids = _message_ids(" ".join(message.header_values("Message-ID")))
        own = ids[0] if ids else ""
        if not own or (own in table and table[own].message is not None):
            own = f"\x00unique-{message.uid}-{message.seq}"  # missing or duplicate id
        container = table.setdefault(own, Node())
        container.message = message
        refs = _message_ids(" ".join(message.header_values("References")))
        if not refs:
            refs = _message_ids(" ".join(message.header_values("In-Reply-To")))[:1]
        previous: Node | None = None
        for ref in refs:  # step 1A
            node = table.setdefault(ref, Node())
            if (
                previous is not None
                and node.parent is None
                and node is not previous
                and not node.is_ancestor_of(previous)
            ):
                previous.add(node)
            previous = node
        # step 1B: the last reference is the message's parent.
        if container.parent is not None:
            container.parent.children.remove(container)
            container.parent = None
        if (
            previous is not None
            and previous is not container
            and not container.is_ancestor_of(previous)
        ):
            previous.add(container)
    # Step 2: the root set.
    roots = [node for node in table.values() if node.parent is None]
    # Step 4: prune dummies.
    roots = _prune(roots, at_root=True)
    for root in roots:
        root.parent = None
    # Step 5: sort.
    _sort_tree(roots)
    # Step 6: gather by subject.
    roots = _group_by_subject(roots)
    # Step 7: sort again, at every level.
    _sort_tree(roots)
    return roots


def _prune(nodes: list[Node], *, at_root: bool) -> list[Node]:
    kept: list[Node] = []
    for node in nodes:
        node.children = _prune(node.children, at_root=False)
        for child in node.children:
            child.parent = node
        if node.message is None:
            if not node.children:
                continue
            if not at_root or len(node.children) == 1:
                for child in node.children:
                    child.parent = None
                kept.extend(node.children)
                continue
        kept.append(node)
    return kept


def _group_by_subject(roots: list[Node]) -> list[Node]:
    table: dict[str, Node] = {}
    for root in roots:  # 6A
        subject, reply = _subject(root.first_message())
        if not subject:
            continue
        old = table.get(subject)
        if (
            old is None
            or (root.message is None and old.message is not None)
            or (old.message is not None and _subject(old.message)[1] and not reply)
        ):
            table[subject] = root
    result = list(roots)
    for root in roots:  # 6B
        subject, reply = _subject(root.first_message())
        target = table.get(subject) if subject else None
        if target is None or target is root or root.parent is not None:
            continue
        if target.message is None and root.message is None:
            for child in list(root.children):
                target.add(child)
        elif target.message is None or (not _subject(target.message)[1] and reply):
            target.add(root)
        else:
            dummy = Node()
            result[result.index(target)] = dummy
            dummy.add(target)
            dummy.add(root)
            table[subject] = dummy
    return [
        node
        for node in result
        if node.parent is None and (node.message is not None or node.children)
    ]


def format_threads(roots: Iterable[Node], number: Callable[[MessageView], int]) -> str:
    """The RFC 5256 §4 thread-list text of ``roots`` (empty for no messages)."""
    return "".join(f"({_members(root, number)})" for root in roots)


def _members(node: Node, number: Callable[[MessageView], int]) -> str:
    parts: list[str] = []
    current = node
    while True:
        if current.message is not None:
            parts.append(str(number(current.message)))
        if len(current.children) == 1:
            current = current.children[0]
            continue
        if current.children:
            parts.append("".join(f"({_members(child, number)})" for child in current.children))
        return " ".join(parts)
