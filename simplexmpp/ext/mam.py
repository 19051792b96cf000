"""XEP-0313 Message Archive Management, paged with XEP-0059 Result Set Management.

```python
for msg in client.mam.query(with_="bob@example.com", max=100):
    print(msg.delay, msg.from_, msg.body)
```

`query()` is a lazy blocking iterator: it asks for `page_size` messages at a time and only
asks for the next page when the caller has consumed the previous one. Each item is the archived
`Message` itself, with its XEP-0203 `delay` (when it was sent) and the archive's id as its
XEP-0359 stanza-id (`msg.stanza_id(archive)`, also `msg.archive_id`).

It also closes the gap a lost session leaves: when the client had to start a new session
because the old one could not be resumed (XEP-0198), the server may have dropped what it held
for the old one. With `client.mam.catch_up` on (the default), the archive is read from the
last message received before the loss, and whatever is missing is delivered as if it had
arrived live; repeats are dropped by their stanza-id and origin-id.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..extension import Extension
from ..errors import IqError, XMPPError
from ..jid import JID
from ..session import from_own_account
from ..stanza import DELAY_NS, SID_NS, Iq, Message, format_datetime, new_id
from .forms import Field, Form

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["MAM", "MAM_NS", "RSM_NS"]

log = logging.getLogger(__name__)

MAM_NS = "urn:xmpp:mam:2"
RSM_NS = "http://jabber.org/protocol/rsm"
FORWARD_NS = "urn:xmpp:forward:0"
_RESULT = "{%s}result" % MAM_NS
_FORWARDED = "{%s}forwarded" % FORWARD_NS
_MESSAGE = "{jabber:client}message"


def _same_jid(a: str, b: str) -> bool:
    try:
        return a == b or JID(a) == JID(b)
    except ValueError:
        return False


class _Page:
    __slots__ = ("archive", "items")

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.items: list[Message] = []


class MAM(Extension):
    """`client.mam`: query archives (our own, or a room's) and fill gaps after a lost
    session."""

    name = "mam"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._pages: dict[str, _Page] = {}
        self._lock = threading.Lock()
        self.catch_up = True
        """Read the archive after a session that could not be resumed (see module docs)."""
        self.caught_up = 0
        """Messages the last catch-up delivered that had not arrived otherwise."""
        self._intercept_stanzas("message", self._intercept, tags=(_RESULT,))
        client.on("resumption_failed", self._on_resumption_failed)

    # -- queries -----------------------------------------------------------------------------
    def query(self, with_: JID | str | None = None, start: datetime | None = None,
              end: datetime | None = None, max: int | None = None, page_size: int = 50, *,
              archive: JID | str | None = None, after_id: str | None = None,
              timeout: float | None = None) -> Iterator[Message]:
        """Archived messages, oldest first, fetched `page_size` at a time.

        `with_` keeps the conversation with one JID; `start`/`end` bound the time; `after_id` starts
        after a known archive id; `max` caps the total; `archive` is a room's JID for a MUC archive
        (default: our own). Raises [`IqError`][simplexmpp.errors.IqError] when the server refuses
        (`item-not-found` for an unknown `after_id`, say).
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if max is not None and max < 0:
            raise ValueError("max must not be negative")
        archive_jid = JID(archive).bare if archive is not None else None
        form = Form(type="submit", fields=[Field("FORM_TYPE", [MAM_NS], type="hidden")])
        if with_ is not None:
            form.fields.append(Field("with", [str(JID(with_))]))
        if start is not None:
            form.fields.append(Field("start", [format_datetime(start)]))
        if end is not None:
            form.fields.append(Field("end", [format_datetime(end)]))
        return self._pages_of(archive_jid, form, max, page_size, after_id, timeout)

    def _pages_of(self, archive: JID | None, form: Form, max: int | None, page_size: int,
                  after: str | None, timeout: float | None) -> Iterator[Message]:
        delivered = 0
        while max is None or delivered < max:
            want = page_size if max is None else min(page_size, max - delivered)
            items, fin = self._page(archive, form, want, after, timeout)
            for msg in items:
                yield self._decrypted(msg, archive, timeout)
                delivered += 1
            rsm = fin.find("{%s}set" % RSM_NS)
            last = rsm.findtext("{%s}last" % RSM_NS) if rsm is not None else None
            if fin.get("complete") in ("true", "1") or not items or not last:
                return
            after = last

    def _decrypted(self, msg: Message, archive: JID | None, timeout: float | None) -> Message:
        """An archived OMEMO message decrypted like a live one (body None and
        `decryption_error` set when it cannot be: a message read before may no longer be);
        from a room's archive by the sender's real JID (simplexmpp.ext.omemo_muc)."""
        omemo = getattr(self._client, "omemo", None)
        if omemo is not None and omemo.is_encrypted(msg):
            if archive is not None and archive != self._client.account.bare and \
                    msg.type == "groupchat":
                omemo_muc = getattr(self._client, "omemo_muc", None)
                if omemo_muc is not None:
                    in_room: Message = omemo_muc.decrypt_archived(archive, msg, timeout)
                    return in_room
            decrypted: Message = omemo.decrypt_message(msg, timeout=timeout, archived=True)
            return decrypted
        return msg

    def _page(self, archive: JID | None, form: Form, max: int, after: str | None,
              timeout: float | None) -> tuple[list[Message], ET.Element]:
        query_id = new_id()
        query = ET.Element("{%s}query" % MAM_NS, queryid=query_id)
        query.append(form.to_element())
        rsm = ET.SubElement(query, "{%s}set" % RSM_NS)
        ET.SubElement(rsm, "{%s}max" % RSM_NS).text = str(max)
        if after is not None:
            ET.SubElement(rsm, "{%s}after" % RSM_NS).text = after
        own = str(self._client.account.bare)
        page = _Page(str(archive) if archive is not None else own)
        with self._lock:
            self._pages[query_id] = page
        try:
            reply = self._client.iq(Iq.set(archive, query), timeout)
        finally:
            with self._lock:
                self._pages.pop(query_id, None)
        fin = reply.payload
        if fin is None or fin.tag != "{%s}fin" % MAM_NS:
            raise IqError("undefined-condition", "cancel",
                          "the archive answered without <fin/>", reply)
        # RFC 6120 §10.1: results came on the same stream before the answer, so all are in.
        return page.items, fin

    def _intercept(self, msg: Message) -> bool:
        """I/O thread: claim archive results and file them under their query."""
        result = msg.xml.find(_RESULT)
        if result is None:
            return False
        with self._lock:
            page = self._pages.get(result.get("queryid", ""))
        sender = msg.xml.get("from")
        own = str(self._client.account.bare)
        # XEP-0313 §4.2: results come from the archive itself; anything else is forged.
        if page is None or not (from_own_account(sender, self._client.account)
                                if page.archive == own else _same_jid(sender or own, page.archive)):
            log.debug("dropping an archive result nobody asked for (from %r)", sender)
            return True
        forwarded = result.find(_FORWARDED)
        inner = forwarded.find(_MESSAGE) if forwarded is not None else None
        if inner is None:
            return True
        delay = forwarded.find("{%s}delay" % DELAY_NS)  # type: ignore[union-attr]
        if delay is not None and inner.find("{%s}delay" % DELAY_NS) is None:
            inner.append(delay)
        archive_id = result.get("id")
        if archive_id:
            for old in inner.findall("{%s}stanza-id" % SID_NS):
                if old.get("by") == page.archive:
                    inner.remove(old)
            ET.SubElement(inner, "{%s}stanza-id" % SID_NS, by=page.archive, id=archive_id)
        page.items.append(Message(inner))
        return True

    # -- catch-up after a lost session -------------------------------------------------------
    def _on_resumption_failed(self, last_stanza_id: str | None) -> None:
        """Dispatcher thread: read our archive from where we were and deliver what we lack."""
        if not self.catch_up:
            return
        client = self._client
        started = time.monotonic()
        own = client.account.bare
        before = client.duplicates_dropped
        seen = 0
        try:
            try:
                results = self._catch_up_results(last_stanza_id)
                for msg in results:
                    seen += 1
                    if not client.well_addressed(msg):
                        continue  # logged; one bad archived message must not stop the rest
                    sender = msg.from_
                    if sender is not None and sender.bare == own:
                        continue  # what we sent ourselves (from another resource, or this one)
                    if msg.type in ("groupchat", "error"):
                        continue
                    if msg.encryption is not None and msg.body is None and \
                            msg.decryption_error is None:
                        continue  # an empty OMEMO message: key material, nothing to read
                    client.deliver(msg)
            except IqError as exc:
                if exc.condition in ("feature-not-implemented", "service-unavailable"):
                    log.debug("no archive to catch up from: %s", exc)
                    return
                raise
        except XMPPError as exc:
            log.warning("catching up from the archive after a lost session failed: %s", exc)
            return
        added = seen - (client.duplicates_dropped - before)
        self.caught_up += max(added, 0)
        log.info("archive catch-up read %d message(s) in %.2f s", seen,
                 time.monotonic() - started)

    def _catch_up_results(self, last_stanza_id: str | None) -> Iterator[Message]:
        if last_stanza_id is not None:
            try:
                yield from self.query(after_id=last_stanza_id, page_size=250)
                return
            except IqError as exc:
                if exc.condition != "item-not-found":
                    raise
                # The id has expired from the archive: fall back to the time window.
        session = self._client.session
        since = session.connected if session is not None else datetime.now(timezone.utc)
        yield from self.query(start=since - timedelta(seconds=5), page_size=250)
