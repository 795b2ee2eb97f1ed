"""LIST (SUBSCRIBED [RECURSIVEMATCH]) of RFC 5258 §3.1 and §3.5, over a user's store view.

The subscribed names matching the pattern are listed whether the mailboxes exist or not
(``\\NonExistent`` when not, §3.4); with RECURSIVEMATCH a name matching the pattern that
is not subscribed itself but has subscribed children the pattern does not reach is listed
too, and every name with such children carries ``("CHILDINFO" ("SUBSCRIBED"))`` (§3.5).
RECURSIVEMATCH alone is a BAD command (§3: it needs another selection option).
"""

from __future__ import annotations

from dataclasses import dataclass

from posthouse.store.names import SEPARATOR
from posthouse.store.patterns import compile_pattern, join_reference, listing
from posthouse.store.service import UserSession


@dataclass(frozen=True)
class SubscribedItem:
    name: str
    attributes: frozenset[str]
    childinfo: bool  # has subscribed children beyond the pattern (RECURSIVEMATCH)


async def subscribed_items(
    user: UserSession, reference: str, pattern: str, *, recursive: bool
) -> list[SubscribedItem]:
    subscribed = {item.name for item in await user.list_subscribed("", "*")}
    full = join_reference(reference, pattern)
    regex = compile_pattern(full)
    existing = {item.name: item for item in await user.list_mailboxes(reference, pattern)}
    items = []
    for match in listing(full, subscribed):
        below = match.name + SEPARATOR
        childinfo = recursive and any(
            name.startswith(below) and not regex.match(name) for name in subscribed
        )
        if match.exists:  # subscribed itself
            known = existing.get(match.name)
            attributes = set(known.attributes) if known else {"\\NonExistent"}
            attributes.add("\\Subscribed")
        elif recursive and childinfo:  # only a parent of subscribed mailboxes
            known = existing.get(match.name)
            attributes = set(known.attributes) - {"\\Subscribed"} if known else {"\\NonExistent"}
        else:
            continue
        items.append(SubscribedItem(match.name, frozenset(attributes), childinfo))
    return items
