"""Extensions (XEPs), one module each, attached to every ``Client`` as attributes.

An extension uses only the client's public API (``send``, ``iq``, ``send_iq``, ``on``,
``register_iq_handler``, ``declare_event``), so users can write their own the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

#: (attribute name, "module:Class") of each extension attached to a client.
EXTENSIONS: list[tuple[str, str]] = [
    ("mam", "mam:MAM"),
]


def attach(client: "Client") -> None:
    """Give ``client`` one instance of every extension."""
    import importlib
    for attribute, target in EXTENSIONS:
        module_name, _, class_name = target.partition(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        setattr(client, attribute, getattr(module, class_name)(client))
