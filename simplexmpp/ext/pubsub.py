"""XEP-0060 Publish-Subscribe: nodes, items, subscriptions, configuration and notifications.

```python
entry = ET.Element("{http://www.w3.org/2005/Atom}entry")
item_id = client.pubsub.publish("pubsub.example.org", "news", entry)
[item.id for item in client.pubsub.items("pubsub.example.org", "news")]
```

`service` is the JID of a pubsub service (`pubsub.example.org`) or of an account, whose
personal eventing service (PEP, XEP-0163) speaks the same protocol; `None` means our own
account (see also [`simplexmpp.ext.pep`][simplexmpp.ext.pep]).

Notifications (`<message><event xmlns='http://jabber.org/protocol/pubsub#event'/>`) are
claimed before they reach the chat inbox and turned into events:

* `"pubsub_event"`: `callback(service: JID, node: str, items: list[Item],
  retracted: list[str])` for published and retracted items (XEP-0060 §7.1.2.1, §7.2.2.1);
* `"pubsub_node_changed"`: `callback(service: JID, node: str, kind: str)` with kind
  `"delete"`, `"purge"` or `"configuration"` (§8.4.3, §8.5.3, §8.2.5).

Errors are [`PubSubError`][simplexmpp.ext.pubsub.PubSubError] (a
[`IqError`][simplexmpp.errors.IqError]) carrying the XEP-0060 application condition
(`pubsub_condition`, e.g. `"precondition-not-met"`) when the service gave one.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..extension import Extension
from ..errors import IqError
from ..jid import JID
from ..stanza import Iq, Message
from .forms import Field, Form

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["PubSub", "PubSubError", "Item", "Subscription", "PUBSUB_NS", "OWNER_NS",
           "EVENT_NS", "ERRORS_NS", "parse_event"]

log = logging.getLogger(__name__)

PUBSUB_NS = "http://jabber.org/protocol/pubsub"
OWNER_NS = PUBSUB_NS + "#owner"
EVENT_NS = PUBSUB_NS + "#event"
ERRORS_NS = PUBSUB_NS + "#errors"
NODE_CONFIG_NS = PUBSUB_NS + "#node_config"
PUBLISH_OPTIONS_NS = PUBSUB_NS + "#publish-options"
SUBSCRIBE_OPTIONS_NS = PUBSUB_NS + "#subscribe_options"
_P = "{%s}" % PUBSUB_NS
_O = "{%s}" % OWNER_NS
_E = "{%s}" % EVENT_NS
_EVENT = _E + "event"
_ERROR = "{jabber:client}error"

Options = Form | Mapping[str, str | bool | int | list[str]]
"""Options for `create`/`publish`/`set_configuration`: a ready form or a mapping of field
names to values (`{"pubsub#access_model": "open", "pubsub#max_items": 10}`)."""


class PubSubError(IqError):
    """A pubsub request failed. Besides the RFC 6120 `condition` (`item-not-found`,
    `conflict`, `forbidden` …) it carries the XEP-0060 §7–8 application condition in
    `pubsub_condition` (`"precondition-not-met"`, `"invalid-options"`, `"unsupported"`
    …, or None) and, for `unsupported`, the missing `feature`."""

    def __init__(self, condition: str, type: str = "cancel", text: str | None = None,
                 stanza: object = None, by: str | None = None,
                 pubsub_condition: str | None = None, feature: str | None = None) -> None:
        if pubsub_condition:
            extra = pubsub_condition + (f" {feature}" if feature else "")
            text = f"{text} [{extra}]" if text else f"[{extra}]"
        super().__init__(condition, type, text, stanza, by)
        self.pubsub_condition = pubsub_condition
        self.feature = feature

    @classmethod
    def from_iq_error(cls, exc: IqError) -> PubSubError:
        """The same error, with the pubsub#errors child of the error stanza read."""
        pubsub_condition = feature = None
        xml = getattr(exc.stanza, "xml", None)
        error = xml.find(_ERROR) if isinstance(xml, ET.Element) else None
        if error is not None:
            for child in error:
                if child.tag.startswith("{%s}" % ERRORS_NS):
                    pubsub_condition = child.tag[len(ERRORS_NS) + 2:]
                    feature = child.get("feature")
                    break
        return cls(exc.condition, exc.type, exc.text, exc.stanza, exc.by,
                   pubsub_condition, feature)


@dataclass
class Item:
    """A published item: its `id` and `payload` (the one child element, or None for a
    notification without payload), and `publisher` when the service says who published."""

    id: str | None
    payload: ET.Element | None = None
    publisher: str | None = None

    @classmethod
    def from_element(cls, item: ET.Element) -> Item:
        payload = next(iter(item), None)
        return cls(item.get("id"), payload, item.get("publisher"))


@dataclass
class Subscription:
    """Our subscription to a node (XEP-0060 §6.1.2): `subscription` is `subscribed`,
    `pending`, `unconfigured` or `none`; `subid` when the service uses them."""

    node: str | None
    jid: str
    subscription: str
    subid: str | None = None


def _form(options: Options | None, form_type: str) -> Form | None:
    """A submit form with `FORM_TYPE` `form_type` from `options` (XEP-0060 §16.4)."""
    if options is None:
        return None
    if isinstance(options, Form):
        return options
    form = Form(type="submit", fields=[Field("FORM_TYPE", [form_type], type="hidden")])
    for var, value in options.items():
        form.set(var, value)
    return form


def _check_node(node: str) -> str:
    if not isinstance(node, str) or not node:
        raise ValueError("a pubsub node name must be a non-empty string")
    return node


def parse_event(event: ET.Element) -> tuple[str | None, str, list[Item], list[str]]:
    """`(node, kind, items, retracted ids)` of an `<event/>` element; kind is `items`,
    `delete`, `purge`, `configuration`, `subscription` or `unknown`."""
    for child in event:
        kind = child.tag[len(_E):] if child.tag.startswith(_E) else "unknown"
        node = child.get("node")
        if kind == "items":
            items = [Item.from_element(i) for i in child.iterfind(_E + "item")]
            retracted = [r.get("id", "") for r in child.iterfind(_E + "retract")]
            return node, kind, items, retracted
        return node, kind, [], []
    return None, "unknown", [], []


class PubSub(Extension):
    """`client.pubsub`: XEP-0060 publish-subscribe against any service (or a PEP account).

    Every method blocks until the service answers, raising
    [`PubSubError`][simplexmpp.ext.pubsub.PubSubError] on an error reply and
    [`TimeoutError`][simplexmpp.errors.TimeoutError] after `timeout` seconds (None: the client's
    default)."""

    name = "pubsub"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        client.declare_event("pubsub_event")
        client.declare_event("pubsub_node_changed")
        self._intercept_stanzas("message", self._intercept, tags=(_EVENT,))

    # -- requests -----------------------------------------------------------------------------
    def _request(self, kind: str, service: JID | str | None, payload: ET.Element,
                 timeout: float | None) -> Iq:
        to = JID(service) if service is not None else None
        iq = Iq.set(to, payload) if kind == "set" else Iq.get(to, payload)
        try:
            return self._client.iq(iq, timeout)
        except PubSubError:
            raise
        except IqError as exc:
            raise PubSubError.from_iq_error(exc) from None

    def create(self, service: JID | str | None, node: str | None,
               config: Options | None = None, timeout: float | None = None) -> str:
        """Create `node` (XEP-0060 §8.1), configured with `config` (§8.1.3; a mapping of
        `pubsub#…` fields or a Form). `node=None` asks for an instant node (§8.1.2).
        Returns the node name. `conflict` if it exists."""
        pubsub = ET.Element(_P + "pubsub")
        create = ET.SubElement(pubsub, _P + "create")
        if node is not None:
            create.set("node", _check_node(node))
        form = _form(config, NODE_CONFIG_NS)
        if form is not None:
            ET.SubElement(pubsub, _P + "configure").append(form.to_element())
        reply = self._request("set", service, pubsub, timeout)
        answer = reply.payload
        created = answer.find(_P + "create") if answer is not None else None
        name = created.get("node") if created is not None else None
        if name:
            return name
        if node is None:
            raise PubSubError("undefined-condition", "cancel",
                              "the service created an instant node but did not name it", reply)
        return node

    def delete(self, service: JID | str | None, node: str,
               timeout: float | None = None) -> None:
        """Delete `node` (XEP-0060 §8.4); subscribers are told."""
        pubsub = ET.Element(_O + "pubsub")
        ET.SubElement(pubsub, _O + "delete", node=_check_node(node))
        self._request("set", service, pubsub, timeout)

    def purge(self, service: JID | str | None, node: str,
              timeout: float | None = None) -> None:
        """Remove every item of `node` (XEP-0060 §8.5)."""
        pubsub = ET.Element(_O + "pubsub")
        ET.SubElement(pubsub, _O + "purge", node=_check_node(node))
        self._request("set", service, pubsub, timeout)

    def publish(self, service: JID | str | None, node: str, payload: ET.Element | None,
                id: str | None = None, options: Options | None = None,
                timeout: float | None = None) -> str:
        """Publish `payload` to `node` (XEP-0060 §7.1) and return the item id (ours, or
        the one the service assigned). `options` are publish-options preconditions
        (§7.1.5): if the node's configuration differs the service refuses with
        `pubsub_condition == "precondition-not-met"`. Many services (PEP among them)
        create the node on first publish (§7.1.4 auto-create)."""
        if payload is not None and not isinstance(payload, ET.Element):
            raise TypeError("the payload must be an xml.etree.ElementTree.Element")
        pubsub = ET.Element(_P + "pubsub")
        publish = ET.SubElement(pubsub, _P + "publish", node=_check_node(node))
        item = ET.SubElement(publish, _P + "item")
        if id is not None:
            item.set("id", id)
        if payload is not None:
            item.append(payload)
        form = _form(options, PUBLISH_OPTIONS_NS)
        if form is not None:
            ET.SubElement(pubsub, _P + "publish-options").append(form.to_element())
        reply = self._request("set", service, pubsub, timeout)
        answer = reply.payload
        # §7.1.2: the result may name the item (required when the service made up the id).
        if answer is not None:
            got = answer.find(f"{_P}publish/{_P}item")
            if got is not None and got.get("id"):
                return got.get("id") or ""
        if id is None:
            raise PubSubError("undefined-condition", "cancel",
                              "the service did not say which id it gave the item", reply)
        return id

    def retract(self, service: JID | str | None, node: str, id: str, notify: bool = True,
                timeout: float | None = None) -> None:
        """Delete item `id` from `node` (XEP-0060 §7.2); `notify` asks the service to
        tell subscribers."""
        pubsub = ET.Element(_P + "pubsub")
        retract = ET.SubElement(pubsub, _P + "retract", node=_check_node(node))
        if notify:
            retract.set("notify", "true")
        ET.SubElement(retract, _P + "item", id=id)
        self._request("set", service, pubsub, timeout)

    def items(self, service: JID | str | None, node: str, max_items: int | None = None,
              item_ids: Iterable[str] | None = None,
              timeout: float | None = None) -> list[Item]:
        """Items of `node` (XEP-0060 §6.5): all, the `max_items` most recent (§6.5.7),
        or those with `item_ids` (§6.5.8). An empty list when the node has none;
        `item-not-found` (PubSubError) when the node does not exist."""
        pubsub = ET.Element(_P + "pubsub")
        items = ET.SubElement(pubsub, _P + "items", node=_check_node(node))
        if max_items is not None:
            if max_items < 1:
                raise ValueError("max_items must be at least 1")
            items.set("max_items", str(int(max_items)))
        if item_ids is not None:
            if isinstance(item_ids, str):
                raise TypeError("item_ids is a list of ids, not one string")
            for item_id in item_ids:
                ET.SubElement(items, _P + "item", id=item_id)
        reply = self._request("get", service, pubsub, timeout)
        answer = reply.payload
        found = answer.find(_P + "items") if answer is not None else None
        if found is None:
            return []
        return [Item.from_element(i) for i in found.iterfind(_P + "item")]

    def subscribe(self, service: JID | str | None, node: str, jid: JID | str | None = None,
                  options: Options | None = None,
                  timeout: float | None = None) -> Subscription:
        """Subscribe `jid` (default: our bare JID) to `node` (XEP-0060 §6.1). The result
        may be `pending` when the owner must approve."""
        who = str(JID(jid)) if jid is not None else str(self._client.account.bare)
        pubsub = ET.Element(_P + "pubsub")
        ET.SubElement(pubsub, _P + "subscribe", node=_check_node(node), jid=who)
        form = _form(options, SUBSCRIBE_OPTIONS_NS)
        if form is not None:
            ET.SubElement(pubsub, _P + "options", node=node, jid=who).append(form.to_element())
        reply = self._request("set", service, pubsub, timeout)
        answer = reply.payload
        sub = answer.find(_P + "subscription") if answer is not None else None
        if sub is None:  # §6.1.2: the reply SHOULD (not MUST) carry the subscription
            return Subscription(node, who, "subscribed")
        return Subscription(sub.get("node", node), sub.get("jid", who),
                            sub.get("subscription", "subscribed"), sub.get("subid"))

    def unsubscribe(self, service: JID | str | None, node: str, jid: JID | str | None = None,
                    subid: str | None = None, timeout: float | None = None) -> None:
        """Cancel the subscription of `jid` (default: our bare JID) to `node` (§6.2)."""
        who = str(JID(jid)) if jid is not None else str(self._client.account.bare)
        pubsub = ET.Element(_P + "pubsub")
        unsub = ET.SubElement(pubsub, _P + "unsubscribe", node=_check_node(node), jid=who)
        if subid is not None:
            unsub.set("subid", subid)
        self._request("set", service, pubsub, timeout)

    def get_configuration(self, service: JID | str | None, node: str,
                          timeout: float | None = None) -> Form:
        """The configuration form of `node` (XEP-0060 §8.2); owners only."""
        pubsub = ET.Element(_O + "pubsub")
        ET.SubElement(pubsub, _O + "configure", node=_check_node(node))
        reply = self._request("get", service, pubsub, timeout)
        answer = reply.payload
        x = answer.find(f"{_O}configure/{{jabber:x:data}}x") if answer is not None else None
        if x is None:
            raise PubSubError("undefined-condition", "cancel",
                              "the configuration answer carries no data form", reply)
        return Form.from_element(x)

    def set_configuration(self, service: JID | str | None, node: str, config: Options,
                          timeout: float | None = None) -> None:
        """Change the configuration of `node` (XEP-0060 §8.2.4): a mapping of fields to
        set (the others keep their values) or a complete submit Form."""
        form = _form(config, NODE_CONFIG_NS)
        assert form is not None
        if form.type != "submit":
            raise ValueError("a node configuration must be submitted as a 'submit' form")
        pubsub = ET.Element(_O + "pubsub")
        ET.SubElement(pubsub, _O + "configure", node=_check_node(node)).append(
            form.to_element())
        self._request("set", service, pubsub, timeout)

    # -- notifications ------------------------------------------------------------------------
    def _intercept(self, msg: Message) -> bool:
        """I/O thread: claim event notifications, hand them to the dispatcher."""
        event = msg.xml.find(_EVENT)
        if event is None or msg.xml.get("type") == "error":
            return False
        sender = msg.xml.get("from")
        try:
            service = JID(sender) if sender else self._client.account.bare
        except ValueError:
            log.debug("dropping a pubsub notification from a bad JID %r", sender)
            return True
        self._client.dispatch(self._notify, service, event)
        return True

    def _notify(self, service: JID, event: ET.Element) -> None:
        node, kind, items, retracted = parse_event(event)
        if node is None:
            log.debug("ignoring a pubsub event without a node from %s", service)
            return
        if kind == "items":
            self._client.emit("pubsub_event", service, node, items, retracted)
        elif kind in ("delete", "purge", "configuration"):
            self._client.emit("pubsub_node_changed", service, node, kind)
        else:
            log.debug("ignoring a pubsub %s event from %s", kind, service)
