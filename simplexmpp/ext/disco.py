"""XEP-0030 Service Discovery and XEP-0115 Entity Capabilities.

```python
info = client.disco.info("conference.localhost")
"http://jabber.org/protocol/muc" in info.features  # -> True
[item.jid for item in client.disco.items()]          # the server's services
# -> [JID('conference.localhost'), JID('upload.localhost')]
```

Our own disco#info is answered automatically from `client.local_identities` and
`client.local_features` (extensions add theirs). Every available presence sent with
`send_presence()` carries our XEP-0115 capabilities hash; `capabilities(jid)` finds what
another entity can do from the hash in its presence, asking it once per hash and verifying the
answer before it is cached (a hash that does not match what the entity answers is not trusted).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..extension import Extension
from ..errors import IqError
from ..jid import JID
from ..stanza import Iq, Presence
from .forms import DATA_NS, Form

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Disco", "DiscoInfo", "DiscoItem", "DiscoItems", "Identity", "caps_hash",
           "INFO_NS", "ITEMS_NS", "CAPS_NS", "CAPS_NODE", "SERVERINFO_FORM_TYPE"]

log = logging.getLogger(__name__)

INFO_NS = "http://jabber.org/protocol/disco#info"
ITEMS_NS = "http://jabber.org/protocol/disco#items"
CAPS_NS = "http://jabber.org/protocol/caps"
CAPS_NODE = "https://github.com/simplexmpp/simplexmpp"
"""The node we put in our caps (XEP-0115 §4: a URI identifying the software)."""
SERVERINFO_FORM_TYPE = "http://jabber.org/network/serverinfo"
"""FORM_TYPE of XEP-0157 contact addresses in a disco#info answer."""
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_CAPS = "{%s}c" % CAPS_NS
_HASHES = {"sha-1": hashlib.sha1, "sha-224": hashlib.sha224, "sha-256": hashlib.sha256,
           "sha-384": hashlib.sha384, "sha-512": hashlib.sha512}


class Identity(NamedTuple):
    """A disco identity (XEP-0030 §3.1); see the XMPP Registrar's category list."""

    category: str
    type: str
    name: str | None = None
    lang: str | None = None


class DiscoInfo:
    """What an entity is (`identities`) and does (`features`), plus its extension forms
    (XEP-0128) in `forms`.

    An entity may publish several extension forms, each named by its `FORM_TYPE`
    (ejabberd's upload service sends its `urn:xmpp:http:upload:0` limits after another
    form, for example): find the one you mean with
    [form_for][simplexmpp.ext.disco.DiscoInfo.form_for], never by position.

    ```python
    info = client.disco.info("upload.example.org")
    form = info.form_for("urn:xmpp:http:upload:0")
    limit = form.value("max-file-size") if form else None
    ```
    """

    def __init__(self, jid: JID | None, node: str | None, identities: list[Identity],
                 features: set[str], forms: list[Form]) -> None:
        self.jid = jid
        self.node = node
        self.identities = identities
        self.features = features
        self.forms = forms

    @property
    def form(self) -> Form | None:
        """The first extension form, whatever its `FORM_TYPE`; kept for old callers. An
        entity may send several: use [form_for][simplexmpp.ext.disco.DiscoInfo.form_for]."""
        return self.forms[0] if self.forms else None

    def form_for(self, form_type: str) -> Form | None:
        """The extension form whose `FORM_TYPE` is `form_type` (XEP-0128 §3: forms are
        told apart by that hidden field), or None when the entity sent none."""
        for form in self.forms:
            if form.form_type == form_type:
                return form
        return None

    @property
    def form_types(self) -> list[str]:
        """The `FORM_TYPE` of each extension form that has one, in the order received."""
        return [form.form_type for form in self.forms if form.form_type]

    def has_identity(self, category: str, type: str | None = None) -> bool:
        return any(i.category == category and (type is None or i.type == type)
                   for i in self.identities)

    @classmethod
    def from_element(cls, query: ET.Element, jid: JID | None = None) -> DiscoInfo:
        identities = [Identity(e.get("category", ""), e.get("type", ""), e.get("name"),
                               e.get(_XML_LANG))
                      for e in query.iterfind("{%s}identity" % INFO_NS)]
        features = {e.get("var", "") for e in query.iterfind("{%s}feature" % INFO_NS)}
        forms = [Form.from_element(x) for x in query.iterfind("{%s}x" % DATA_NS)]
        return cls(jid, query.get("node"), identities, features, forms)

    def to_element(self) -> ET.Element:
        query = ET.Element("{%s}query" % INFO_NS)
        if self.node:
            query.set("node", self.node)
        for ident in self.identities:
            attrs = {"category": ident.category, "type": ident.type}
            if ident.name:
                attrs["name"] = ident.name
            if ident.lang:
                attrs[_XML_LANG] = ident.lang
            ET.SubElement(query, "{%s}identity" % INFO_NS, attrs)
        for feature in sorted(self.features):
            ET.SubElement(query, "{%s}feature" % INFO_NS, var=feature)
        for form in self.forms:
            query.append(form.to_element())
        return query

    def caps_hash(self, algorithm: str = "sha-1") -> str:
        return caps_hash(self.identities, self.features, self.forms, algorithm)

    def __repr__(self) -> str:
        return (f"DiscoInfo(jid={str(self.jid) if self.jid else None!r}, "
                f"identities={self.identities!r}, features={sorted(self.features)!r})")

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<tr><td>identity</td><td>{esc(i.category)}/{esc(i.type)}</td>"
                       f"<td>{esc(i.name or '')}</td></tr>" for i in self.identities)
        rows += "".join(f"<tr><td>feature</td><td colspan=2>{esc(f)}</td></tr>"
                        for f in sorted(self.features))
        title = esc(str(self.jid or "")) + (f" node {esc(self.node)}" if self.node else "")
        return f"<table><caption>{title}</caption>{rows}</table>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"DiscoInfo {self.jid or ''}")
        for ident in self.identities:
            printer.break_()
            printer.text(f"  identity {ident.category}/{ident.type} {ident.name or ''}")
        for feature in sorted(self.features):
            printer.break_()
            printer.text(f"  feature {feature}")


class DiscoItem(NamedTuple):
    """One item of a disco#items answer (XEP-0030 §4)."""

    jid: JID
    node: str | None = None
    name: str | None = None


class DiscoItems(list):  # type: ignore[type-arg]
    """The items of an entity: a list of [`DiscoItem`][simplexmpp.ext.disco.DiscoItem] that shows as
    a table in Jupyter."""

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<tr><td>{esc(str(i.jid))}</td><td>{esc(i.node or '')}</td>"
                       f"<td>{esc(i.name or '')}</td></tr>" for i in self)
        return f"<table><tr><th>JID</th><th>node</th><th>name</th></tr>{rows}</table>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"DiscoItems ({len(self)})")
        for item in self:
            printer.break_()
            printer.text(f"  {item.jid}" + (f" node={item.node}" if item.node else "")
                         + (f" ({item.name})" if item.name else ""))


def caps_hash(identities: list[Identity], features: set[str] | list[str],
              forms: list[Form] = (), algorithm: str = "sha-1") -> str:  # type: ignore[assignment]
    """The XEP-0115 §5.1 verification string, hashed and base64-encoded.

    Raises ValueError for input that §5.4 says must not be trusted (duplicate identities or
    features, an extension form whose FORM_TYPE is missing or not hidden is skipped)."""
    try:
        hasher = _HASHES[algorithm]
    except KeyError:
        raise ValueError(f"unsupported caps hash {algorithm!r}") from None
    idents = ["/".join((i.category, i.type, i.lang or "", i.name or "")) for i in identities]
    feature_list = list(features)
    if len(set(idents)) != len(idents) or len(set(feature_list)) != len(feature_list):
        raise ValueError("duplicate identity or feature (XEP-0115 §5.4 3.3/3.4)")
    # §5.1: sort by i;octet, i.e. by UTF-8 bytes.
    parts = [s + "<" for s in sorted(idents, key=lambda s: s.encode())]
    parts += [f + "<" for f in sorted(feature_list, key=lambda s: s.encode())]
    typed: list[tuple[str, Form]] = []
    for form in forms:
        form_type = form.get("FORM_TYPE")
        if form_type is None or not form_type.values:
            continue  # §5.4 3.6: forms without FORM_TYPE are ignored
        if form_type.type != "hidden":
            raise ValueError("an extension form's FORM_TYPE is not hidden (XEP-0115 §5.4)")
        typed.append((form_type.values[0], form))
    if len({t for t, _ in typed}) != len(typed):
        raise ValueError("two extension forms share a FORM_TYPE (XEP-0115 §5.4 3.5)")
    for type_name, form in sorted(typed, key=lambda p: p[0].encode()):
        parts.append(type_name + "<")
        for fld in sorted((f for f in form.fields if f.var and f.var != "FORM_TYPE"),
                          key=lambda f: (f.var or "").encode()):
            parts.append((fld.var or "") + "<")
            parts += [v + "<" for v in sorted(fld.values, key=lambda s: s.encode())]
    return base64.b64encode(hasher("".join(parts).encode()).digest()).decode()


class Disco(Extension):
    """`client.disco`: ask others (`info`, `items`, `capabilities`) and answer for
    ourselves."""

    name = "disco"
    features = (INFO_NS, ITEMS_NS, CAPS_NS)

    cache_size = 1000
    """How many verified capability sets are kept (shared by all clients in the process)."""
    _cache: OrderedDict[tuple[str, str], DiscoInfo] = OrderedDict()
    _cache_lock = threading.Lock()

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._caps_of: dict[str, tuple[str, str, str]] = {}  # full JID -> (node, ver, hash)
        self._lock = threading.Lock()
        self.nodes: dict[str, DiscoInfo | Callable[[Iq], DiscoInfo]] = {}
        """Extra disco#info answers for our own nodes: node -> a DiscoInfo, or a function of
        the request [Iq][simplexmpp.Iq] returning one (it may raise
        [IqError][simplexmpp.errors.IqError], e.g. `forbidden`)."""
        self.item_nodes: dict[str, Callable[[Iq], list[DiscoItem]]] = {}
        """disco#items answers for our own nodes: node -> a function of the request
        [Iq][simplexmpp.Iq] returning the items (ad-hoc commands list theirs here)."""
        client.register_iq_handler("get", "{%s}query" % INFO_NS, self._answer_info)
        client.register_iq_handler("get", "{%s}query" % ITEMS_NS, self._answer_items)
        client.presence_decorators.append(self._decorate)
        self._intercept_stanzas("presence", self._watch_presence)

    # -- asking others --------------------------------------------------------------------

    def info(self, jid: JID | str | None = None, node: str | None = None,
             timeout: float | None = None) -> DiscoInfo:
        """disco#info of `jid` (default: our server) at `node`."""
        query = ET.Element("{%s}query" % INFO_NS)
        if node:
            query.set("node", node)
        target = self._target(jid)
        reply = self._client.iq(Iq.get(target, query), timeout)
        answer = reply.payload
        if answer is None or answer.tag != "{%s}query" % INFO_NS:
            raise IqError("bad-request", "modify", "disco#info answer without a query")
        info = DiscoInfo.from_element(answer, target)
        info.node = node
        return info

    def items(self, jid: JID | str | None = None, node: str | None = None,
              timeout: float | None = None) -> DiscoItems:
        """disco#items of `jid` (default: our server) at `node`; items whose JID is
        invalid are skipped with a log line."""
        query = ET.Element("{%s}query" % ITEMS_NS)
        if node:
            query.set("node", node)
        reply = self._client.iq(Iq.get(self._target(jid), query), timeout)
        items = DiscoItems()
        answer = reply.payload
        if answer is None:
            return items
        for item in answer.iterfind("{%s}item" % ITEMS_NS):
            try:
                items.append(DiscoItem(JID(item.get("jid", "")), item.get("node"),
                                       item.get("name")))
            except ValueError as exc:
                log.info("skipping a disco item with a bad JID: %s", exc)
        return items

    def find(self, category: str, type: str | None = None, feature: str | None = None,
             jid: JID | str | None = None, timeout: float | None = None) -> list[DiscoInfo]:
        """The items of `jid` (default: our server) having an identity of `category`
        (and `type`) and, if given, `feature`: e.g. `find("conference", "text")` for
        MUC services, `find("store", "file")` for HTTP upload."""
        found = []
        for item in self.items(jid, timeout=timeout):
            try:
                info = self.info(item.jid, item.node, timeout)
            except IqError:
                continue
            if info.has_identity(category, type) and (feature is None or
                                                      feature in info.features):
                found.append(info)
        return found

    def contact_addresses(self, jid: JID | str | None = None,
                          timeout: float | None = None) -> dict[str, list[str]]:
        """XEP-0157 contact addresses of `jid` (default: our server): the
        `http://jabber.org/network/serverinfo` form of its disco#info, as
        `{"abuse": [...], "admin": [...], "support": [...], ...}` (each `<role>-addresses`
        field under its role, addresses as given: `mailto:`, `xmpp:`, `https:` URIs).
        Roles without an address are left out; {} when the entity publishes none.

        ```python
        client.disco.contact_addresses()
        # -> {'abuse': ['mailto:abuse@example.org'], 'admin': ['xmpp:admin@example.org']}
        ```
        """
        form = self.info(jid, timeout=timeout).form_for(SERVERINFO_FORM_TYPE)
        addresses: dict[str, list[str]] = {}
        if form is None:
            return addresses
        for found in form.fields:
            # XEP-0157 §4: each role is a list-multi field named <role>-addresses.
            if found.var and found.var.endswith("-addresses"):
                values = [v.strip() for v in found.values if v.strip()]
                if values:
                    addresses[found.var[:-len("-addresses")]] = values
        return addresses

    def capabilities(self, jid: JID | str, timeout: float | None = None) -> DiscoInfo:
        """What `jid` (a full JID that sent us presence) supports: from the cache when its
        XEP-0115 hash is known and was verified, else asked and verified (§5.4) first. An
        entity without caps in its presence is simply asked."""
        full = str(jid)
        with self._lock:
            caps = self._caps_of.get(full)
        if caps is None:
            return self.info(full, timeout=timeout)
        node, ver, algorithm = caps
        with self._cache_lock:
            cached = self._cache.get((algorithm, ver))
            if cached is not None:
                self._cache.move_to_end((algorithm, ver))
                return cached
        info = self.info(full, f"{node}#{ver}", timeout)
        try:
            computed = info.caps_hash(algorithm)
        except ValueError as exc:
            log.info("not caching the capabilities of %s: %s", full, exc)
            return info
        if computed != ver:
            log.info("capabilities of %s do not match their hash (%s, not %s); not cached",
                     full, computed, ver)
            return info
        with self._cache_lock:
            self._cache[(algorithm, ver)] = info
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return info

    def caps_of(self, jid: JID | str) -> tuple[str, str, str] | None:
        """(node, ver, hash) from the last presence of full JID `jid`, if it had caps."""
        with self._lock:
            return self._caps_of.get(str(jid))

    def _target(self, jid: JID | str | None) -> JID:
        return JID(jid) if jid is not None else JID(self._client.account.domain)

    # -- answering for ourselves --------------------------------------------------------------

    def local_info(self) -> DiscoInfo:
        """What we answer to disco#info: `client.local_identities` and
        `client.local_features`."""
        identities = [Identity(c, t, n or None) for c, t, n in
                      sorted(self._client.local_identities)]
        return DiscoInfo(None, None, identities, set(self._client.local_features), [])

    @property
    def ver(self) -> str:
        """Our current XEP-0115 verification string (SHA-1)."""
        return self.local_info().caps_hash()

    def _answer_info(self, iq: Iq) -> ET.Element:
        query = iq.payload
        node = query.get("node") if query is not None else None
        if node in self.nodes:
            found = self.nodes[node]
            info = found if isinstance(found, DiscoInfo) else found(iq)
        elif node and node != f"{CAPS_NODE}#{self.ver}":
            raise IqError("item-not-found", "cancel", f"no disco node {node!r} here")
        else:
            info = self.local_info()
        answer = info.to_element()
        if node:
            answer.set("node", node)
        return answer

    def _answer_items(self, iq: Iq) -> ET.Element:
        query = iq.payload
        answer = ET.Element("{%s}query" % ITEMS_NS)
        node = query.get("node") if query is not None else None
        if node:
            answer.set("node", node)
            provider = self.item_nodes.get(node)
            if provider is not None:
                for item in provider(iq):
                    element = ET.SubElement(answer, "{%s}item" % ITEMS_NS, jid=str(item.jid))
                    if item.node:
                        element.set("node", item.node)
                    if item.name:
                        element.set("name", item.name)
        return answer

    def _decorate(self, presence: Presence) -> None:
        # XEP-0115 §4: caps in every available presence, sent only when they change...
        ET.SubElement(presence.xml, _CAPS, hash="sha-1", node=CAPS_NODE, ver=self.ver)

    def update_caps(self, timeout: float | None = None) -> None:
        """Re-send our broadcast presence with a fresh hash (after `local_features`
        changed), as XEP-0115 §4 asks; nothing to do when no presence was broadcast."""
        last = self._client.broadcast_presence
        if last is None or not self._client.is_connected:
            return
        self._client.send_presence(last.show, last.status, last.priority, timeout=timeout)

    def _watch_presence(self, presence: Presence) -> bool:
        """I/O thread: note the caps others announce (never claims the presence)."""
        sender = presence.xml.get("from")
        if sender is None:
            return False
        c = presence.xml.find(_CAPS)
        with self._lock:
            if c is not None and presence.xml.get("type") is None:
                algorithm = c.get("hash")
                ver, node = c.get("ver"), c.get("node")
                if algorithm in _HASHES and ver and node:
                    self._caps_of[sender] = (node, ver, algorithm)
            elif presence.xml.get("type") == "unavailable":
                self._caps_of.pop(sender, None)
        return False
