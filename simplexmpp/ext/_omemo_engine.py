"""The OMEMO engine behind `client.omemo`: python-omemo's session manager with the `twomemo`
(`urn:xmpp:omemo:2`) and `oldmemo` (`eu.siacs.conversations.axolotl`) backends, run on a
private asyncio event loop in a thread of its own.

python-omemo is asyncio code. Nothing of that shows outside this module: the extension calls
[Engine.run][simplexmpp.ext._omemo_engine.Engine.run] from any thread (a user's, the
dispatcher, a Jupyter cell whose thread already runs an event loop) and gets a plain result;
the coroutine runs on our loop, never on the caller's. Everything python-omemo does, including
its calls back into us (publish a bundle, fetch a device list, send an empty message), runs on
that one thread, one operation after the other, so the session manager and the store are never
used by two threads at once. Those call-backs use the client's ordinary blocking methods
(`client.pep`, `client.send`): they wait for the I/O thread, never for the dispatcher, so a
decryption started from a dispatcher callback cannot deadlock.

Imported only when OMEMO is used: it needs the optional packages (`simplexmpp[omemo]`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (DisconnectedError, NoTrustedDevicesError, OMEMOError,
                      OMEMOUnavailableError, TimeoutError, XMPPError)

try:
    import oldmemo
    import oldmemo.etree
    import omemo
    import twomemo
    import twomemo.etree
    from omemo.backend import Backend, DecryptionFailed, KeyExchangeFailed
    from omemo.session_manager import (BundleDeletionFailed, BundleDownloadFailed, BundleNotFound,
                                       BundleUploadFailed, DeviceListDownloadFailed,
                                       DeviceListUploadFailed, MessageNotForUs,
                                       MessageSendingFailed, NoEligibleDevices, NoSession,
                                       PublicDataInconsistency, SenderDistrusted, SenderNotFound,
                                       SessionManager, UnknownNamespace, UnknownTrustLevel)
    from omemo.types import DeviceInformation, DeviceList, OMEMOException, TrustLevel
except ImportError as exc:  # pragma: no cover - the extra is installed where this runs
    raise OMEMOUnavailableError("OMEMO needs the packages omemo, twomemo and oldmemo: "
                                f"pip install 'simplexmpp[omemo]' ({exc})") from exc

from .pubsub import PubSubError
from ._omemo_store import JSONStorage

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Engine", "TWOMEMO", "OLDMEMO", "Decrypted"]

log = logging.getLogger(__name__)

T = TypeVar("T")

TWOMEMO: str = twomemo.twomemo.NAMESPACE
OLDMEMO: str = oldmemo.oldmemo.NAMESPACE
TWOMEMO_DEVICES = "urn:xmpp:omemo:2:devices"
TWOMEMO_BUNDLES = "urn:xmpp:omemo:2:bundles"
OLDMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
OLDMEMO_BUNDLES = "eu.siacs.conversations.axolotl.bundles:%d"

# Trust levels as stored (python-omemo keeps one "custom trust level name" per identity key).
BLIND, TRUSTED, DISTRUSTED, UNDECIDED = "blind", "trusted", "distrusted", "undecided"
TRUST_LEVELS = (BLIND, TRUSTED, DISTRUSTED, UNDECIDED)

# A broken session is healed (a fresh key exchange sent, XEP-0384 §7 "Business rules") at most
# this often per device: a flood of undecryptable messages must not become a flood of ours.
HEAL_INTERVAL = 600.0
# Device lists of accounts whose PEP notifications we may not get (not in our roster) are
# fetched again before sending when older than this.
DEVICE_LIST_MAX_AGE = 600.0


class Decrypted:
    """What decrypting one `<encrypted/>` element gave."""

    __slots__ = ("namespace", "device_id", "plaintext", "error")

    def __init__(self, namespace: str, device_id: int | None, plaintext: bytes | None,
                 error: str | None) -> None:
        self.namespace = namespace
        self.device_id = device_id
        self.plaintext = plaintext
        """None for an empty OMEMO message (key exchange, heartbeat) or a failure."""
        self.error = error
        """Why it could not be decrypted; None when it was."""


class _Glue:
    """The XMPP side python-omemo calls back into (on the engine's loop thread)."""

    def __init__(self, client: Client, own: str, store: JSONStorage,
                 policy: Callable[[], str]) -> None:
        self.client = client
        self.own = own
        self.store = store
        self.policy = policy
        # While encrypting, "undecided" devices are simply not encrypted for (python-omemo
        # would otherwise refuse the whole message); while decrypting they are read.
        self.encrypting = False
        # Our nodes whose max_items was set by configuration (not accepted as a publish option)
        self.max_items_configured: set[str] = set()

    # -- PEP (XEP-0163) ----------------------------------------------------------------------
    def publish(self, node: str, item: ET.Element, item_id: str,
                options: dict[str, str]) -> None:
        """Publish with publish-options; a node that exists with other options answers
        `conflict` + `precondition-not-met` (XEP-0060 §7.1.5): reconfigure it and publish
        again."""
        # What we publish (a new signed pre key, say, from python-omemo's own rotation task,
        # which runs outside our operations) is on disk before it leaves.
        self.store.flush()
        pep = self.client.pep
        if node in self.max_items_configured:  # see below: the server takes it only there
            options = {k: v for k, v in options.items() if k != "pubsub#max_items"}
        try:
            pep.publish(node, item, item_id, options)
        except PubSubError as exc:
            if exc.pubsub_condition == "precondition-not-met":
                log.info("reconfiguring our PEP node %s for OMEMO (%s)", node, options)
                self.client.pubsub.set_configuration(None, node, options)
                pep.publish(node, item, item_id, options)
            elif "pubsub#max_items" in options:
                # ejabberd refuses pubsub#max_items as a publish option (resource-constraint,
                # "Unknown field"): publish without it, then set it in the node configuration.
                log.info("%s refused pubsub#max_items as a publish option (%s); setting it "
                         "in the node configuration instead", node, exc)
                rest = {k: v for k, v in options.items() if k != "pubsub#max_items"}
                self.publish(node, item, item_id, rest)
                try:
                    self.client.pubsub.set_configuration(
                        None, node, {"pubsub#max_items": options["pubsub#max_items"]})
                    self.max_items_configured.add(node)
                except PubSubError as config_exc:
                    log.warning("could not set pubsub#max_items of our PEP node %s (%s): "
                                "the server may keep fewer bundles than we have devices",
                                node, config_exc)
            else:
                raise

    def items(self, jid: str, node: str, **kwargs: Any) -> list[Any] | None:
        """Items of `jid`'s PEP node; None when the node does not exist or we may not see
        it (Prosody answers `forbidden` for another user's missing node)."""
        try:
            return self.client.pep.items(jid, node, **kwargs)
        except PubSubError as exc:
            if exc.condition in ("item-not-found", "forbidden"):
                return None
            raise

    def send(self, message: omemo.Message, bare_jid: str) -> None:
        """python-omemo's empty OMEMO messages (key exchange completion, heartbeats,
        healing): sent as a chat message with a store hint (XEP-0384 §7: so the archive keeps
        it; XEP-0334)."""
        self.store.flush()  # the state that made it is on disk before it leaves
        stanza = self.client.new_message(bare_jid, None, "chat")
        stanza.xml.append(serialize(message))
        ET.SubElement(stanza.xml, "{urn:xmpp:hints}store")
        self.client.send(stanza)


def serialize(message: omemo.Message) -> ET.Element:
    if message.namespace == TWOMEMO:
        return twomemo.etree.serialize_message(message)
    if message.namespace == OLDMEMO:
        return oldmemo.etree.serialize_message(message)
    raise UnknownNamespace(f"unknown OMEMO namespace {message.namespace}")


class _Manager(SessionManager):
    """python-omemo's session manager wired to one client (see `_Glue`). `create()` makes
    instances with no arguments, so the glue is a class attribute of a per-engine subclass."""

    glue: _Glue

    async def _upload_bundle(self, bundle: omemo.Bundle) -> None:  # type: ignore[override]
        glue = self.glue
        try:
            if isinstance(bundle, twomemo.twomemo.BundleImpl):
                # XEP-0384 §5.3.2: one item per device, so the node must keep "max" items
                # (Prosody refuses a number above 256 with bad-request).
                glue.publish(TWOMEMO_BUNDLES, twomemo.etree.serialize_bundle(bundle),
                             str(bundle.device_id),
                             {"pubsub#access_model": "open", "pubsub#max_items": "max"})
            elif isinstance(bundle, oldmemo.oldmemo.BundleImpl):
                glue.publish(OLDMEMO_BUNDLES % bundle.device_id,
                             oldmemo.etree.serialize_bundle(bundle), "current",
                             {"pubsub#access_model": "open"})
            else:
                raise UnknownNamespace(f"unknown OMEMO namespace {bundle.namespace}")
        except XMPPError as exc:
            raise BundleUploadFailed(f"publishing our {bundle.namespace} bundle failed: "
                                     f"{exc}") from exc

    async def _download_bundle(  # type: ignore[override]  # python-omemo: static methods
            self, namespace: str, bare_jid: str, device_id: int) -> omemo.Bundle:
        glue = self.glue
        try:
            if namespace == TWOMEMO:
                items = glue.items(bare_jid, TWOMEMO_BUNDLES, item_ids=[str(device_id)])
            elif namespace == OLDMEMO:
                items = glue.items(bare_jid, OLDMEMO_BUNDLES % device_id, max_items=1)
            else:
                raise UnknownNamespace(f"unknown OMEMO namespace {namespace}")
        except XMPPError as exc:
            raise BundleDownloadFailed(f"fetching the {namespace} bundle of {bare_jid} "
                                       f"device {device_id} failed: {exc}") from exc
        if namespace == TWOMEMO:
            # One node holds the bundles of all the account's devices, one item each, named by
            # the device id; a service may answer with more items than asked for.
            items = [item for item in items or () if item.id == str(device_id)]
        payload = items[-1].payload if items else None
        if payload is None:
            raise BundleNotFound(f"{bare_jid} publishes no {namespace} bundle for device "
                                 f"{device_id}")
        try:
            if namespace == TWOMEMO:
                return twomemo.etree.parse_bundle(payload, bare_jid, device_id)
            return oldmemo.etree.parse_bundle(payload, bare_jid, device_id)
        except Exception as exc:  # noqa: BLE001 - schema and value errors of a peer's data
            raise BundleDownloadFailed(f"the {namespace} bundle of {bare_jid} device "
                                       f"{device_id} is malformed: {exc}") from exc

    async def _delete_bundle(self, namespace: str, device_id: int) -> None:  # type: ignore[override]
        pep = self.glue.client.pep
        try:
            if namespace == TWOMEMO:
                pep.retract(TWOMEMO_BUNDLES, str(device_id), notify=False)
            elif namespace == OLDMEMO:
                pep.delete(OLDMEMO_BUNDLES % device_id)
            else:
                raise UnknownNamespace(f"unknown OMEMO namespace {namespace}")
        except PubSubError as exc:
            if exc.condition != "item-not-found":
                raise BundleDeletionFailed(str(exc)) from exc
        except XMPPError as exc:
            raise BundleDeletionFailed(str(exc)) from exc

    async def _upload_device_list(self, namespace: str, device_list: DeviceList) -> None:  # type: ignore[override]
        try:
            if namespace == TWOMEMO:
                self.glue.publish(TWOMEMO_DEVICES,
                                  twomemo.etree.serialize_device_list(device_list),
                                  "current", {"pubsub#access_model": "open"})
            elif namespace == OLDMEMO:
                self.glue.publish(OLDMEMO_DEVICES,
                                  oldmemo.etree.serialize_device_list(device_list),
                                  "current", {"pubsub#access_model": "open"})
            else:
                raise UnknownNamespace(f"unknown OMEMO namespace {namespace}")
        except XMPPError as exc:
            raise DeviceListUploadFailed(f"publishing our {namespace} device list failed: "
                                         f"{exc}") from exc

    async def _download_device_list(self, namespace: str, bare_jid: str) -> DeviceList:  # type: ignore[override]
        node = {TWOMEMO: TWOMEMO_DEVICES, OLDMEMO: OLDMEMO_DEVICES}.get(namespace)
        if node is None:
            raise UnknownNamespace(f"unknown OMEMO namespace {namespace}")
        try:
            items = self.glue.items(bare_jid, node)
        except XMPPError as exc:
            raise DeviceListDownloadFailed(f"fetching the {namespace} device list of "
                                           f"{bare_jid} failed: {exc}") from exc
        if not items:
            return {}  # no node (or not visible to us): no devices
        # One item ("current") by the XEP; a node keeping several has the newest last.
        payload = items[-1].payload
        return parse_device_list(namespace, payload, bare_jid)

    async def _evaluate_custom_trust_level(self, device: DeviceInformation) -> TrustLevel:
        name = device.trust_level_name
        if name in (TRUSTED, BLIND):
            return TrustLevel.TRUSTED
        if name == DISTRUSTED:
            return TrustLevel.DISTRUSTED
        if name == UNDECIDED:
            return TrustLevel.DISTRUSTED if self.glue.encrypting else TrustLevel.UNDECIDED
        raise UnknownTrustLevel(f"unknown trust level {name!r}")

    async def _make_trust_decision(self, undecided: frozenset[DeviceInformation],
                                   identifier: str | None) -> None:
        # Not reached: the engine applies the trust policy before encrypting (see
        # Engine._apply_policy), and undecided devices count as not trusted while encrypting.
        return None

    async def _send_message(self, message: omemo.Message, bare_jid: str) -> None:  # type: ignore[override]
        try:
            self.glue.send(message, bare_jid)
        except XMPPError as exc:
            raise MessageSendingFailed(str(exc)) from exc


def parse_device_list(namespace: str, payload: ET.Element | None,
                      bare_jid: str) -> DeviceList:
    """A device list item's payload; a malformed one counts as no devices (logged)."""
    if payload is None:
        return {}
    try:
        if namespace == TWOMEMO:
            return twomemo.etree.parse_device_list(payload)
        return oldmemo.etree.parse_device_list(payload)
    except Exception as exc:  # noqa: BLE001 - a peer's malformed list must not stop us
        log.warning("ignoring the malformed %s device list of %s: %s", namespace, bare_jid,
                    exc)
        return {}


class Engine:
    """One account's OMEMO state: the store, the loop thread and the session manager."""

    def __init__(self, client: Client, store_path: str, policy: Callable[[], str]) -> None:
        self.client = client
        self.own = str(client.account.bare)
        self.store = JSONStorage(store_path, self.own)
        self.glue = _Glue(client, self.own, self.store, policy)
        self.manager: _Manager | None = None
        self.backends: list[Backend] = []
        self.device_id = 0                         # set by start()
        self.identity_key = b""
        self.prepared_session: int | None = None   # Session.number announced for
        # When each account's device lists were last fetched (this session). PEP notifications
        # keep contacts' lists current; others are fetched again when older than
        # DEVICE_LIST_MAX_AGE, so a device a stranger adds is seen within that time.
        self.refreshed: dict[str, float] = {}
        self._healed: dict[tuple[str, str, int], float] = {}
        self.closed = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, daemon=True,
                                       name=f"simplexmpp-omemo-{self.own}")
        self.thread.start()

    # -- the loop thread -------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the engine's loop and wait for its result (any thread but the
        loop's own). The store is written when it ends."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("OMEMO engine called from its own loop thread")
        if self.closed:
            coro.close()
            raise DisconnectedError(f"OMEMO for {self.own} stopped with the client")
        future = asyncio.run_coroutine_threadsafe(self._flushing(coro), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"OMEMO operation took longer than {timeout:g} s") from None
        except concurrent.futures.CancelledError:
            raise DisconnectedError(f"OMEMO for {self.own} stopped with the client") from None
        except OMEMOException as exc:
            raise OMEMOError(f"OMEMO: {type(exc).__name__}: {exc}") from exc

    def submit(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run `coro` on the loop without waiting; a failure is logged."""
        future = asyncio.run_coroutine_threadsafe(self._flushing(coro), self.loop)

        def done(f: concurrent.futures.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("OMEMO: %s failed: %s", what, f.exception())
        future.add_done_callback(done)

    async def _flushing(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        finally:
            self.store.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the session manager and the loop thread, write and unlock the store."""
        manager, self.manager = self.manager, None
        if manager is not None and self.thread.is_alive():
            try:
                self.run(manager.shutdown(), timeout)
            except Exception as exc:  # noqa: BLE001 - closing goes on
                log.debug("OMEMO shutdown: %s", exc)
        self.closed = True  # later run() calls fail at once instead of waiting their timeout
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self.thread:
                self.thread.join(timeout)
        self.store.close()

    # -- operations (coroutines, run on the loop) --------------------------------------------
    async def start(self, session_number: int | None) -> None:
        """Load our identity and device (or make them on first use and publish them),
        make sure our device list and bundles online are what we have (XEP-0384: announce
        our device before we send; python-omemo clients drop messages from a device that is
        not on the sender's list), and leave history-synchronization mode."""
        if self.manager is None:
            self.backends = [twomemo.Twomemo(self.store), oldmemo.Oldmemo(self.store)]
            cls: type[_Manager] = type("SimplexmppSessionManager", (_Manager,),
                                       {"glue": self.glue})
            self.manager = await cls.create(self.backends, self.store, self.own,
                                            initial_own_label=None,
                                            undecided_trust_level_name=UNDECIDED)
        device, _ = await self.manager.get_own_device_information()
        self.device_id = device.device_id
        self.identity_key = device.identity_key
        await self.manager.ensure_data_consistency()
        await self.manager.after_history_sync()
        self.prepared_session = session_number
        self.refreshed = {self.own: time.monotonic()}

    def _manager(self) -> _Manager:
        if self.manager is None:
            raise OMEMOError("OMEMO is not started (connect first)")
        return self.manager

    async def refresh(self, bare_jid: str, force: bool = False) -> None:
        """Fetch `bare_jid`'s device lists when not fetched in this session or longer than
        DEVICE_LIST_MAX_AGE ago (PEP notifications keep contacts' lists current meanwhile),
        or with `force`."""
        fetched = self.refreshed.get(bare_jid)
        if fetched is not None and not force and \
                time.monotonic() - fetched < DEVICE_LIST_MAX_AGE:
            return
        manager = self._manager()
        for namespace in (TWOMEMO, OLDMEMO):
            try:
                await manager.refresh_device_list(namespace, bare_jid)
            except DeviceListDownloadFailed as exc:
                log.info("OMEMO: %s", exc)
        self.refreshed[bare_jid] = time.monotonic()

    async def device_list_update(self, namespace: str, bare_jid: str,
                                 payload: ET.Element | None) -> None:
        """A device list notification (PEP, `+notify`)."""
        device_list = parse_device_list(namespace, payload, bare_jid)
        await self._manager().update_device_list(namespace, bare_jid, device_list)

    async def _apply_policy(self, bare_jid: str) -> None:
        """Blind trust before verification (the default policy): a device never decided on
        becomes "blind" (trusted) unless a device of the same account was verified by hand
        (then new devices wait for a decision). Policy "manual": they stay undecided."""
        manager = self._manager()
        devices = await manager.get_device_information(bare_jid)
        undecided = [d for d in devices if d.trust_level_name == UNDECIDED]
        if not undecided or self.glue.policy() != "blind":
            return
        if any(d.trust_level_name == TRUSTED for d in devices):
            return
        for device in undecided:
            await manager.set_trust(bare_jid, device.identity_key, BLIND)

    async def devices(self, bare_jid: str, force: bool = False) -> list[DeviceInformation]:
        await self.refresh(bare_jid, force=force)
        await self._apply_policy(bare_jid)
        return sorted(await self._manager().get_device_information(bare_jid),
                      key=lambda d: d.device_id)

    async def set_trust(self, bare_jid: str, device_id: int, level: str) -> None:
        if level not in TRUST_LEVELS:
            raise ValueError(f"trust level must be one of {TRUST_LEVELS}, not {level!r}")
        await self.refresh(bare_jid)
        manager = self._manager()
        devices = await manager.get_device_information(bare_jid)
        for device in devices:
            if device.device_id == device_id:
                await manager.set_trust(bare_jid, device.identity_key, level)
                return
        known = sorted(d.device_id for d in devices)
        raise OMEMOError(f"{bare_jid} has no OMEMO device {device_id} (known: {known})")

    async def encrypt(self, recipients: list[str], plaintexts: dict[str, bytes],
                      order: list[str]) -> list[ET.Element]:
        """Encrypt for every trusted device of `recipients` and of our own account (but this
        device); one `<encrypted/>` element per namespace used. Each device gets the first
        namespace of `order` it publishes."""
        manager = self._manager()
        for bare in recipients:
            await self.refresh(bare)
        for bare in {*recipients, self.own}:
            await self._apply_policy(bare)
        self.glue.encrypting = True
        try:
            try:
                messages, errors = await manager.encrypt(frozenset(recipients), plaintexts,
                                                         backend_priority_order=order)
            except NoEligibleDevices as exc:
                # Maybe the lists we hold are old: fetch them once more and try again.
                for bare in exc.bare_jids:
                    await self.refresh(bare, force=True)
                    await self._apply_policy(bare)
                messages, errors = await manager.encrypt(frozenset(recipients), plaintexts,
                                                         backend_priority_order=order)
        except NoEligibleDevices as exc:
            jids = sorted(exc.bare_jids)
            raise NoTrustedDevicesError(
                f"no OMEMO device of {', '.join(jids)} can read the message: none publishes "
                f"keys in {' or '.join(order)}, or none is trusted; nothing was sent "
                "(client.omemo.devices(jid) lists them)", jids) from None
        finally:
            self.glue.encrypting = False
        for error in errors:
            log.warning("OMEMO: not encrypting for %s device %d (%s): %s", error.bare_jid,
                        error.device_id, error.namespace, error.exception)
        elements = [serialize(message) for message in messages
                    if any(True for _ in message.keys)]
        if not elements:
            # Only possible for a note to ourselves without another device of ours: python-
            # omemo does not count our own account as a recipient that must be reachable.
            jids = sorted(set(recipients))
            raise NoTrustedDevicesError(
                f"no OMEMO device of {', '.join(jids)} but this one can read the message "
                "(OMEMO never encrypts for the sending device); nothing was sent", jids)
        return elements

    async def decrypt(self, element: ET.Element, namespace: str, sender: str,
                      heal: bool = True) -> Decrypted:
        """Decrypt one `<encrypted/>` element from `sender` (a bare JID). Never raises for
        what a peer sent: the reason is in `error`."""
        manager = self._manager()
        device_id: int | None = None
        try:
            header = element.find("{%s}header" % namespace)
            device_id = int(header.get("sid", "")) if header is not None else None
        except ValueError:
            device_id = None
        try:
            if namespace == TWOMEMO:
                message = twomemo.etree.parse_message(element, sender)
            else:
                message = await oldmemo.etree.parse_message(element, sender, self.own, manager)
        except SenderNotFound as exc:
            return Decrypted(namespace, device_id, None,
                             f"the sending device is not on {sender}'s device list ({exc})")
        except Exception as exc:  # noqa: BLE001 - schema/base64/protobuf errors of peer data
            return Decrypted(namespace, device_id, None, f"malformed OMEMO element: {exc}")
        device_id = message.device_id
        try:
            plaintext, device, _ = await manager.decrypt(message)
        except MessageNotForUs:
            reason = ("not encrypted for this device"
                      + (" (sent by this device: OMEMO never encrypts for the sending device)"
                         if sender == self.own and device_id == self.device_id
                         else ""))
            return Decrypted(namespace, device_id, None, reason)
        except SenderDistrusted:
            return Decrypted(namespace, device_id, None,
                             f"{sender} device {device_id} is distrusted")
        except SenderNotFound as exc:
            return Decrypted(namespace, device_id, None,
                             f"the sending device is not on {sender}'s device list ({exc})")
        except PublicDataInconsistency as exc:
            return Decrypted(namespace, device_id, None, f"inconsistent public keys: {exc}")
        except (NoSession, DecryptionFailed, KeyExchangeFailed) as exc:
            # XEP-0384 §7 (business rules): a message that cannot be decrypted with the
            # session (or without one) gets a fresh key exchange in answer, so that the
            # sender's next message can be read.
            if not heal:
                return Decrypted(namespace, device_id, None, f"{type(exc).__name__}: {exc}")
            await self.heal(namespace, sender, device_id)
            return Decrypted(namespace, device_id, None,
                             f"{type(exc).__name__}: {exc}; a new session was offered to "
                             f"{sender} device {device_id}")
        except MessageSendingFailed as exc:  # the empty answer failed; the message is read
            log.warning("OMEMO: could not send the key exchange answer: %s", exc)
            return Decrypted(namespace, device_id, None, f"{exc}")
        return Decrypted(namespace, device.device_id, plaintext, None)

    async def heal(self, namespace: str, bare_jid: str, device_id: int) -> None:
        """Replace the session with a device whose message we could not read: a new key
        exchange in an empty OMEMO message (at most once per HEAL_INTERVAL per device)."""
        key = (namespace, bare_jid, device_id)
        now = time.monotonic()
        last = self._healed.get(key)
        if last is not None and now - last < HEAL_INTERVAL:
            return
        self._healed[key] = now
        manager = self._manager()
        backend = next((b for b in self.backends if b.namespace == namespace), None)
        if backend is None:
            return
        try:
            devices = await manager.get_device_information(bare_jid)
            device = next((d for d in devices if d.device_id == device_id), None)
            if device is None or await manager._evaluate_custom_trust_level(device) \
                    is TrustLevel.DISTRUSTED:
                return
            content, key_material = await backend.encrypt_empty()
            bundle = await manager._download_bundle(namespace, bare_jid, device_id)
            session, encrypted = await backend.build_session_active(
                bare_jid, device_id, bundle, key_material)
            await manager._send_message(omemo.Message(
                namespace, self.own, self.device_id, content,
                frozenset({(encrypted, session.key_exchange)})), bare_jid)
            await backend.store_session(session)
            log.info("OMEMO: offered a new %s session to %s device %d", namespace, bare_jid,
                     device_id)
        except Exception as exc:  # noqa: BLE001 - healing is best effort, and logged
            log.warning("OMEMO: could not offer a new session to %s device %d: %s", bare_jid,
                        device_id, exc)


def fingerprint(identity_key: bytes) -> str:
    """The identity key's fingerprint as OMEMO clients show it: its Curve25519 form, hex."""
    return "".join(SessionManager.format_identity_key(identity_key))
