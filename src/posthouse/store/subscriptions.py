"""A user's subscriptions (RFC 3501 §6.3.6, §6.3.7): a sorted list of internal mailbox names.

The text form is the chapter's ``user/NAME.sub``: one name per line, sorted, UTF-8.
Subscribing to a name that does not exist is allowed (RFC 3501 §6.3.6); the list is bounded.
"""

from __future__ import annotations

from posthouse.store.names import check_name

__all__ = ["MAX_SUBSCRIPTIONS", "format_subscriptions", "parse_subscriptions", "updated"]

MAX_SUBSCRIPTIONS = 10_000


def parse_subscriptions(text: str) -> frozenset[str]:
    names = set()
    for line in text.splitlines():
        if line:
            try:
                names.add(check_name(line))
            except ValueError:
                continue  # a damaged line loses only itself
    return frozenset(names)


def format_subscriptions(names: frozenset[str]) -> str:
    return "".join(f"{name}\n" for name in sorted(names))


def updated(names: frozenset[str], name: str, subscribed: bool) -> frozenset[str]:
    """``names`` with ``name`` added or removed; ``ValueError`` past the limit."""
    check_name(name)
    if subscribed:
        if name not in names and len(names) >= MAX_SUBSCRIPTIONS:
            raise ValueError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per user")
        return names | {name}
    return names - {name}
