"""Built-in extensions (XEPs), one module each, attached to every `Client` as attributes.

Each is a [simplexmpp.extension.Extension][] subclass using only the public extension interface (see
docs/extensions/writing.md): the client's public methods (`send`, `new_message`, `iq`,
`send_iq`, `on`, `register_iq_handler`, `add_stanza_handler`, `declare_event`,
`emit`, `has_callbacks`, `dispatch`, `deliver`, `local_features`,
`presence_decorators`) and the lifecycle hooks. None touches a private attribute of the
client (tests/unit/test_extension.py checks every module here). The one package-private
fast path, `Extension._intercept` (a claim check on the I/O thread, never user code), is a
method of the extension base, not of the client.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

EXTENSIONS: list[tuple[str, str]] = [
    ("disco", "disco:Disco"),
    ("version", "version:Version"),
    ("receipts", "receipts:Receipts"),
    ("chatstates", "chatstates:ChatStates"),
    ("markers", "markers:Markers"),
    ("correction", "correction:Correction"),
    ("reactions", "reactions:MessageReactions"),
    ("replies", "replies:MessageReplies"),
    ("retraction", "retraction:MessageRetraction"),
    ("blocking", "blocking:Blocking"),
    ("csi", "csi:CSI"),
    ("carbons", "carbons:Carbons"),
    ("mam", "mam:MAM"),
    ("muc", "muc:MUC"),
    ("upload", "upload:Upload"),
    ("oob", "oob:OOB"),
    ("files", "files:Files"),
    ("registration", "register:Registration"),
    ("vcard", "vcard:VCard"),
    ("pubsub", "pubsub:PubSub"),
    ("pep", "pep:PEP"),
    ("avatar", "avatar:Avatar"),
    ("omemo", "omemo:OMEMO"),
    ("omemo_muc", "omemo_muc:OmemoMUC"),
    ("time", "entity_time:Time"),
    ("last_activity", "last_activity:LastActivityExtension"),
    ("bookmarks", "bookmarks:Bookmarks"),
    ("commands", "commands:Commands"),
]
"""(attribute name, "module:Class") of each extension attached to a client."""


def attach(client: "Client", skip: Collection[str] = ()) -> None:
    """Give `client` one instance of every extension (except those named in `skip`)."""
    import importlib
    for attribute, target in EXTENSIONS:
        if attribute in skip:
            continue
        module_name, _, class_name = target.partition(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        cls = getattr(module, class_name)
        assert cls.name == attribute, (cls, attribute)
        client.extension(cls)
