"""DNS SRV decisions of transport.resolve, with a stand-in resolver (no sockets): the records
come from a table, and the lifetime each lookup is given is recorded."""

from __future__ import annotations

from typing import Any, NamedTuple

import dns.resolver
import pytest

from simplexmpp import errors
from simplexmpp.transport import Target, resolve


class Record(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str


class TableResolver:
    def __init__(self, table: dict[str, list[tuple[int, int, int, str]]]) -> None:
        self.table = table
        self.asked: list[tuple[str, float]] = []

    def resolve(self, name: str, rdtype: str, lifetime: float | None = None) -> Any:
        assert rdtype == "SRV"
        self.asked.append((name, lifetime or 0.0))
        if name not in self.table:
            raise dns.resolver.NXDOMAIN()
        return [Record(*r) for r in self.table[name]]


XMPP, XMPPS = "_xmpp-client._tcp.example.org", "_xmpps-client._tcp.example.org"


def test_records_of_both_kinds_in_priority_order() -> None:
    resolver = TableResolver({XMPPS: [(5, 0, 5223, "tls.example.org.")],
                              XMPP: [(20, 0, 5222, "b.example.org."),
                                     (10, 0, 5222, "a.example.org.")]})
    assert resolve("example.org", None, None, "starttls", 4, resolver=resolver) == [
        Target("tls.example.org", 5223, True), Target("a.example.org", 5222, False),
        Target("b.example.org", 5222, False)]


def test_no_records_fall_back_to_the_domain() -> None:
    assert resolve("example.org", None, 5299, "starttls", 4, resolver=TableResolver({})) == \
        [Target("example.org", 5299, False)]


@pytest.mark.parametrize("tls, table", [
    ("starttls", {XMPP: [(0, 0, 0, ".")]}),
    ("starttls", {XMPP: [(0, 0, 0, ".")], XMPPS: [(0, 0, 0, ".")]}),
    ("direct", {XMPPS: [(0, 0, 0, ".")], XMPP: [(0, 0, 5222, "a.example.org.")]}),
    ("none", {XMPP: [(0, 0, 0, ".")]}),
])
def test_target_dot_means_no_service_and_no_fallback(tls: str, table: dict[str, Any]) -> None:
    with pytest.raises(errors.NoXMPPServiceError, match='target "."'):
        resolve("example.org", None, None, tls, 4, resolver=TableResolver(table))


def test_target_dot_for_direct_tls_alone_leaves_starttls_and_its_fallback() -> None:
    resolver = TableResolver({XMPPS: [(0, 0, 0, ".")]})
    assert resolve("example.org", None, None, "starttls", 4, resolver=resolver) == \
        [Target("example.org", 5222, False)]
    resolver = TableResolver({XMPPS: [(0, 0, 0, ".")],
                              XMPP: [(0, 0, 5222, "a.example.org.")]})
    assert resolve("example.org", None, None, "starttls", 4, resolver=resolver) == \
        [Target("a.example.org", 5222, False)]


def test_lookups_share_the_budget() -> None:
    resolver = TableResolver({})
    resolve("example.org", None, None, "starttls", 4, resolver=resolver)
    (first, first_life), (second, second_life) = resolver.asked
    assert (first, second) == (XMPPS, XMPP)
    # The first may take half; the second what is left of the whole (here nearly all of it,
    # the first having answered at once): both end within the one budget.
    assert 0 < first_life <= 2 and first_life < second_life <= 4


def test_host_given_skips_dns() -> None:
    resolver = TableResolver({XMPP: [(0, 0, 0, ".")]})
    assert resolve("example.org", "127.0.0.1", None, "direct", 4, resolver=resolver) == \
        [Target("127.0.0.1", 5223, True)]
    assert resolver.asked == []
