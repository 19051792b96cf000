"""XEP-0050 Ad-Hoc Commands, both sides: offer commands (a bot's menu), and list and run
other entities' commands (a server's admin commands, another bot's).

Offering a command takes a function; one that asks for input is a generator that yields a
data form (XEP-0004) per stage and gets the submitted form back:

```python
from simplexmpp.ext.forms import Field, Form

@client.commands.command("status", "Server status")
def status(request):
    return "All systems go"                  # completed, with an info note

@client.commands.command("greet", "Greet someone", allow="all")
def greet(request):
    answer = yield Form(title="Greeting", fields=[
        Field("name", type="text-single", label="Whom?", required=True)])
    return f"Hello, {answer.value('name')}!"
```

Running others' commands:

```python
for command in client.commands.list("example.org"):
    print(command.node, command.name)
session = client.commands.execute("example.org", "uptime")
session.status, session.notes              # ('completed', [Note('info', 'up 3 days')])
session = client.commands.execute("bot@example.org", "greet")
session.form.fields                        # the first stage's form
session.complete(name="Alice")             # submit it; session.notes has the answer
```

Who may run our commands: `allow=` of each command, by default `"subscribed"` (our own
account, and contacts in [client.roster][simplexmpp.Client.roster] with a `from` or `both`
subscription, i.e. who may see our presence); `"all"`; `"self"` (our own account only);
a collection of bare JIDs; or a function of the requester's full JID returning a bool.
Others neither see the command in the list nor may run it (`forbidden`).

Handlers run on the client's dispatcher thread, one request at a time (like every IQ handler):
a long command should hand its work to a thread of its own. Sessions of multi-stage commands
are kept for [session_timeout][simplexmpp.ext.commands.Commands.session_timeout] seconds
after their last stage, at most [max_sessions][simplexmpp.ext.commands.Commands.max_sessions]
at a time (new ones are then refused with `resource-constraint`).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from ..errors import IqError
from ..extension import Extension
from ..jid import JID
from ..stanza import Iq, new_id
from .disco import DiscoInfo, DiscoItem, Identity
from .forms import DATA_NS, Form

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Commands", "CommandSession", "CommandInfo", "CommandRequest", "CommandError",
           "CommandFailed", "Note", "Stage", "COMMANDS_NS"]

log = logging.getLogger(__name__)

COMMANDS_NS = "http://jabber.org/protocol/commands"
"""XEP-0050: the namespace of `<command/>`, also the disco node that lists commands."""
_COMMAND = "{%s}command" % COMMANDS_NS
_X = "{%s}x" % DATA_NS
_ACTIONS = ("execute", "cancel", "prev", "next", "complete")
_NOTE_TYPES = ("info", "warn", "error")
# XEP-0050 §4.6: the application conditions and the stanza condition each goes with.
_CONDITIONS = {"bad-action": "bad-request", "bad-locale": "bad-request",
               "bad-payload": "bad-request", "bad-sessionid": "bad-request",
               "malformed-action": "bad-request", "session-expired": "not-allowed"}


class Note(NamedTuple):
    """A `<note/>` of a command's answer: `type` is info, warn or error."""

    type: str
    text: str


@dataclass
class Stage:
    """One stage of a multi-stage command, yielded by its generator: the `form` to fill
    in, `notes` shown with it, and `last` (True: the requester's default action is to
    complete; False: to go on to a next stage). A plain [Form][simplexmpp.ext.forms.Form]
    yielded is `Stage(form)`."""

    form: Form
    notes: list[Note | str] = field(default_factory=list)
    last: bool = False


class CommandFailed(Exception):
    """Raise it in a command handler to end the command with an error note (XEP-0050 §4.4: a
    command that completes but fails carries `<note type='error'/>`)."""


class CommandError(IqError):
    """Running a command was refused: besides the stanza `condition` it carries the XEP-0050
    §4.6 `command_condition` (`bad-action`, `bad-sessionid`, `session-expired`,
    `bad-payload`, `bad-locale`, `malformed-action`) when the responder gave one."""

    def __init__(self, condition: str, type: str = "cancel", text: str | None = None,
                 stanza: object = None, by: str | None = None,
                 command_condition: str | None = None) -> None:
        if command_condition:
            text = f"{text} [{command_condition}]" if text else f"[{command_condition}]"
        super().__init__(condition, type, text, stanza, by)
        self.command_condition = command_condition

    @classmethod
    def from_iq_error(cls, exc: IqError) -> CommandError:
        found = None
        xml = getattr(exc.stanza, "xml", None)
        error = xml.find("{jabber:client}error") if isinstance(xml, ET.Element) else None
        if error is not None:
            for child in error:
                if child.tag.startswith("{%s}" % COMMANDS_NS):
                    found = child.tag[len(COMMANDS_NS) + 2:]
                    break
        return cls(exc.condition, exc.type, exc.text, exc.stanza, exc.by, found)


class CommandInfo(NamedTuple):
    """A command another entity offers: where to send it (`jid`), its `node`, its `name`."""

    jid: JID
    node: str
    name: str | None


@dataclass
class CommandRequest:
    """What a command handler learns about the request: who asks (`requester`, a full
    JID), which command (`node`), the `session_id`, the requester's language (`lang`), and
    the `form` submitted with the first request, if any."""

    requester: JID
    node: str
    session_id: str
    lang: str | None = None
    form: Form | None = None


Allow = Union[str, Collection[Any], Callable[[JID], bool]]
"""Who may run a command: "subscribed", "all", "self", bare JIDs, or a function of the
requester's JID."""
Handler = Callable[[CommandRequest], Any]


@dataclass
class _Command:
    node: str
    name: str
    handler: Handler
    allow: Allow


@dataclass
class _Session:
    command: _Command
    requester: JID
    generator: Generator[Any, Any, Any]
    actions: tuple[str, ...]
    touched: float
    form: Form | None = None  # the form of the stage waiting for its answer


class CommandSession:
    """The state of a command we run on another entity, after each answer.

    `status` is `"executing"` (a stage waits for input: `form`, `actions`), `"completed"`
    or `"canceled"`; `notes` are the answer's notes, `form` its data form (a stage's form,
    or a completed command's result), `payload` every other element of the answer.
    [next][simplexmpp.ext.commands.CommandSession.next],
    [complete][simplexmpp.ext.commands.CommandSession.complete],
    [prev][simplexmpp.ext.commands.CommandSession.prev] and
    [cancel][simplexmpp.ext.commands.CommandSession.cancel] send the following request and
    update this object with the answer (they return it, too)."""

    def __init__(self, commands: Commands, jid: JID, node: str) -> None:
        self._commands = commands
        self.jid = jid
        self.node = node
        self.session_id: str | None = None
        self.status = "executing"
        self.form: Form | None = None
        self.notes: list[Note] = []
        self.actions: set[str] = set()
        """The actions the responder offers for this stage (`next`, `prev`, `complete`)."""
        self.default_action: str | None = None
        self.payload: list[ET.Element] = []

    @property
    def done(self) -> bool:
        """Whether the session ended (completed or canceled)."""
        return self.status in ("completed", "canceled")

    @property
    def failed(self) -> bool:
        """Whether the command completed with an error note (XEP-0050 §4.4)."""
        return any(note.type == "error" for note in self.notes)

    def next(self, form: Form | None = None, timeout: float | None = None,
             **values: Any) -> CommandSession:
        """Submit this stage and go on (`form`, or `values` filled into this stage's form
        as in [Form.submission][simplexmpp.ext.forms.Form.submission])."""
        return self._send("next", form, values, timeout)

    def complete(self, form: Form | None = None, timeout: float | None = None,
                 **values: Any) -> CommandSession:
        """Submit this stage and finish the command."""
        return self._send("complete", form, values, timeout)

    def execute(self, form: Form | None = None, timeout: float | None = None,
                **values: Any) -> CommandSession:
        """Submit this stage with the responder's default action."""
        return self._send("execute", form, values, timeout)

    def prev(self, timeout: float | None = None) -> CommandSession:
        """Go back to the previous stage."""
        return self._send("prev", None, {}, timeout)

    def cancel(self, timeout: float | None = None) -> CommandSession:
        """Cancel the command (always allowed, XEP-0050 §4.3)."""
        return self._send("cancel", None, {}, timeout)

    def _send(self, action: str, form: Form | None, values: dict[str, Any],
              timeout: float | None) -> CommandSession:
        if self.done:
            raise ValueError(f"the command {self.node!r} of {self.jid} is {self.status}; "
                             "nothing more can be sent in this session")
        if form is not None and values:
            raise TypeError("give either a form or field values, not both")
        if form is None and (values or action in ("next", "complete", "execute")):
            base = self.form if self.form is not None else Form()
            form = base.submission(**values)
        return self._commands._send(self, action, form, timeout)

    def _update(self, command: ET.Element) -> None:
        self.session_id = command.get("sessionid") or self.session_id
        self.status = command.get("status") or "completed"
        self.notes = []
        for note in command.iterfind("{%s}note" % COMMANDS_NS):
            kind = note.get("type") or "info"  # XEP-0050 §6.3: no type means info
            self.notes.append(Note(kind if kind in _NOTE_TYPES else "info", note.text or ""))
        actions = command.find("{%s}actions" % COMMANDS_NS)
        self.actions = set()
        self.default_action = None
        if actions is not None:
            self.actions = {child.tag[len(COMMANDS_NS) + 2:] for child in actions
                            if child.tag.startswith("{%s}" % COMMANDS_NS)}
            self.default_action = actions.get("execute")
        x = command.find(_X)
        self.form = Form.from_element(x) if x is not None else None
        self.payload = [child for child in command
                        if child.tag not in (_X, "{%s}note" % COMMANDS_NS,
                                             "{%s}actions" % COMMANDS_NS)]

    def __repr__(self) -> str:
        return (f"<CommandSession {self.node!r} at {self.jid} {self.status}"
                f"{' with a form' if self.form is not None else ''}"
                f"{f' notes={self.notes!r}' if self.notes else ''}>")


class Commands(Extension):
    """`client.commands`: XEP-0050 ad-hoc commands, offered and run."""

    name = "commands"
    features = (COMMANDS_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._commands: dict[str, _Command] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self.session_timeout = 600.0
        """Seconds a multi-stage session waits for its next request before it expires."""
        self.max_sessions = 1000
        """Most multi-stage sessions kept at a time (all requesters together)."""
        client.register_iq_handler("set", _COMMAND, self._answer)
        disco = getattr(client, "disco", None)
        if disco is not None:
            disco.item_nodes[COMMANDS_NS] = self._list_for
            disco.nodes[COMMANDS_NS] = DiscoInfo(
                None, COMMANDS_NS, [Identity("automation", "command-list")], set(), [])

    # -- offering commands ---------------------------------------------------------------------
    def command(self, node: str, name: str, *, allow: Allow = "subscribed",
                ) -> Callable[[Handler], Handler]:
        """Decorator: offer the decorated function as command `node` named `name`.
        See the module text for what it may return or yield."""
        def register(handler: Handler) -> Handler:
            self.add(node, name, handler, allow=allow)
            return handler
        return register

    def add(self, node: str, name: str, handler: Handler, *,
            allow: Allow = "subscribed") -> None:
        """Offer `handler` as command `node` named `name` (replacing a command of the same
        node)."""
        if not isinstance(node, str) or not node:
            raise ValueError("a command node must be a non-empty string")
        if node == COMMANDS_NS:
            raise ValueError(f"{COMMANDS_NS} is the node that lists commands")
        if not callable(handler):
            raise TypeError("the command handler must be callable")
        if isinstance(allow, str) and allow not in ("subscribed", "all", "self"):
            raise ValueError(f"allow must be 'subscribed', 'all', 'self', JIDs or a "
                             f"function, not {allow!r}")
        if not isinstance(allow, str) and not callable(allow):
            allow = frozenset(JID(j).bare for j in allow)
        command = _Command(node, name, handler, allow)
        with self._lock:
            self._commands[node] = command
        disco = getattr(self._client, "disco", None)
        if disco is not None:
            disco.nodes[node] = lambda iq: self._info_for(command, iq)

    def remove(self, node: str) -> None:
        """Stop offering command `node` (its running sessions end with their next request)."""
        with self._lock:
            self._commands.pop(node, None)
        disco = getattr(self._client, "disco", None)
        if disco is not None:
            disco.nodes.pop(node, None)

    @property
    def offered(self) -> dict[str, str]:
        """Our commands: node -> name."""
        with self._lock:
            return {c.node: c.name for c in self._commands.values()}

    def _allowed(self, command: _Command, requester: JID | None) -> bool:
        if requester is None:
            return False
        allow = command.allow
        own = requester.bare == self._client.account.bare
        if allow == "all":
            return True
        if allow == "self":
            return own
        if allow == "subscribed":
            if own:
                return True
            item = self._client.roster.get(requester.bare)
            return item is not None and item.subscription in ("from", "both")
        if callable(allow):
            try:
                return bool(allow(requester))
            except Exception:  # noqa: BLE001 - user code: refuse, and say why in the log
                log.exception("the allow function of command %r failed", command.node)
                return False
        return requester.bare in allow

    def _list_for(self, iq: Iq) -> list[DiscoItem]:
        # XEP-0050 §2.2: the list need not be the same for every requester; we show each
        # requester only what it may run.
        me = self._client.jid or self._client.account
        with self._lock:
            commands = list(self._commands.values())
        return [DiscoItem(me, c.node, c.name) for c in commands
                if self._allowed(c, iq.from_)]

    def _info_for(self, command: _Command, iq: Iq) -> DiscoInfo:
        if not self._allowed(command, iq.from_):
            raise IqError("forbidden", "auth")  # XEP-0050 §2.2
        return DiscoInfo(None, command.node,
                         [Identity("automation", "command-node", command.name)],
                         {COMMANDS_NS, DATA_NS}, [])

    # -- answering -----------------------------------------------------------------------------
    def _error(self, iq: Iq, command_condition: str, text: str | None = None) -> Iq:
        condition = _CONDITIONS[command_condition]
        reply = iq.error_reply(condition, "modify" if condition == "bad-request" else "cancel",
                               text)
        error = reply.xml.find("{jabber:client}error")
        assert error is not None
        ET.SubElement(error, "{%s}%s" % (COMMANDS_NS, command_condition))
        return reply

    def _answer(self, iq: Iq) -> Iq | ET.Element:
        request = iq.payload
        assert request is not None
        node = request.get("node")
        action = request.get("action") or "execute"
        session_id = request.get("sessionid")
        requester = iq.from_
        if not node:
            raise IqError("bad-request", "modify", "a command needs a node (XEP-0050 §6.1)")
        if action not in _ACTIONS:
            return self._error(iq, "malformed-action", f"unknown action {action!r}")
        x = request.find(_X)
        try:
            form = Form.from_element(x) if x is not None else None
        except ValueError:
            return self._error(iq, "bad-payload", "the data form is not valid")
        if session_id:
            return self._continue(iq, node, session_id, action, form)
        with self._lock:
            command = self._commands.get(node)
        if command is None:
            raise IqError("item-not-found", "cancel", f"no command {node!r} here")
        if requester is None or not self._allowed(command, requester):
            raise IqError("forbidden", "auth", f"you may not run {node!r}")
        if action == "cancel":  # nothing started: nothing to cancel
            return self._reply(node, new_id(), "canceled")
        session_id = f"{new_id()}"
        lang = iq.xml.get("{http://www.w3.org/XML/1998/namespace}lang")
        cmd_request = CommandRequest(requester, node, session_id, lang, form)
        try:
            result = command.handler(cmd_request)
        except IqError:
            raise
        except CommandFailed as exc:
            return self._reply(node, session_id, "completed", [Note("error", str(exc))])
        if inspect.isgenerator(result):
            now = time.monotonic()
            with self._lock:
                self._expire(now)
                if len(self._sessions) >= self.max_sessions:
                    result.close()
                    raise IqError("resource-constraint", "wait",
                                  "too many command sessions; try again later")
                entry = _Session(command, requester, result, (), now)
                self._sessions[session_id] = entry
            return self._step(entry, node, session_id, lambda: next(result))
        return self._finish(node, session_id, result)

    def _continue(self, iq: Iq, node: str, session_id: str, action: str,
                  form: Form | None) -> Iq | ET.Element:
        now = time.monotonic()
        with self._lock:
            expired = self._expire(now)
            entry = self._sessions.get(session_id)
            if entry is not None and (entry.requester != iq.from_ or
                                      entry.command.node != node):
                entry = None  # XEP-0050 §4.2: a session is for one requester/responder pair
            if entry is not None:
                entry.touched = now
        if entry is None:
            if session_id in expired:
                return self._error(iq, "session-expired")
            return self._error(iq, "bad-sessionid", "no such command session")
        if action == "cancel":
            self._end(session_id)
            return self._reply(node, session_id, "canceled")
        if action != "execute" and action not in entry.actions:
            return self._error(iq, "bad-action",
                               f"{action!r} is not allowed at this stage")
        submitted = form if form is not None else Form(type="submit")
        if submitted.type == "cancel":  # XEP-0050 §4.4.1: a cancel form counts as submit
            submitted.type = "submit"
        if entry.form is not None:
            # XEP-0004 §3.2: a submitted form need not repeat field types; take them from
            # the form we sent, so that value() gives lists and booleans as asked for.
            for answer in submitted.fields:
                asked = entry.form.get(answer.var) if answer.var else None
                if answer.type is None and asked is not None:
                    answer.type = asked.type
        generator = entry.generator
        return self._step(entry, node, session_id, lambda: generator.send(submitted))

    def _step(self, entry: _Session, node: str, session_id: str,
              advance: Callable[[], Any]) -> Iq | ET.Element:
        """Run the generator to its next stage (or its end) and answer with it."""
        try:
            stage = advance()
        except StopIteration as stop:
            self._end(session_id, close=False)
            return self._finish(node, session_id, stop.value)
        except CommandFailed as exc:
            self._end(session_id, close=False)
            return self._reply(node, session_id, "completed", [Note("error", str(exc))])
        except BaseException:
            self._end(session_id, close=False)
            raise
        if isinstance(stage, Form):
            stage = Stage(stage)
        if not isinstance(stage, Stage):
            self._end(session_id)
            raise TypeError(f"command {node!r} yielded {type(stage).__name__}; a command "
                            "generator yields a Form or a Stage")
        if stage.form.type != "form":
            stage.form.type = "form"
        entry.actions = ("complete",) if stage.last else ("next", "complete")
        entry.form = stage.form
        default = "complete" if stage.last else "next"
        return self._reply(node, session_id, "executing", _notes(stage.notes), [stage.form],
                           (entry.actions, default))

    def _finish(self, node: str, session_id: str, result: Any) -> ET.Element:
        notes: list[Note] = []
        payload: list[Form | ET.Element] = []
        items = result if isinstance(result, (list, tuple)) and \
            not isinstance(result, Note) else [result]
        for item in items:
            if item is None:
                continue
            if isinstance(item, (str, Note)):
                notes.extend(_notes([item]))
            elif isinstance(item, (Form, ET.Element)):
                payload.append(item)
            else:
                raise TypeError(f"command {node!r} returned {type(item).__name__}; return "
                                "None, a str, a Note, a Form, an Element or a list of them")
        return self._reply(node, session_id, "completed", notes, payload)

    def _reply(self, node: str, session_id: str, status: str, notes: list[Note] = [],
               payload: list[Form | ET.Element] = [],
               actions: tuple[tuple[str, ...], str] | None = None) -> ET.Element:
        command = ET.Element(_COMMAND, node=node, sessionid=session_id, status=status)
        if actions is not None:
            allowed, default = actions
            element = ET.SubElement(command, "{%s}actions" % COMMANDS_NS, execute=default)
            for action in allowed:
                ET.SubElement(element, "{%s}%s" % (COMMANDS_NS, action))
        for item in payload:
            command.append(item.to_element() if isinstance(item, Form) else item)
        for note in notes:
            ET.SubElement(command, "{%s}note" % COMMANDS_NS, type=note.type).text = note.text
        return command

    def _expire(self, now: float) -> set[str]:
        """Drop sessions idle for longer than session_timeout (lock held); their ids."""
        gone = {sid for sid, s in self._sessions.items()
                if now - s.touched > self.session_timeout}
        for sid in gone:
            self._sessions.pop(sid).generator.close()
        return gone

    def _end(self, session_id: str, close: bool = True) -> None:
        with self._lock:
            entry = self._sessions.pop(session_id, None)
        if entry is not None and close:
            entry.generator.close()

    # -- running others' commands --------------------------------------------------------------
    def list(self, jid: JID | str | None = None, timeout: float | None = None,
             ) -> list[CommandInfo]:
        """The commands `jid` (default: our server) offers us (XEP-0050 §2.2)."""
        disco = getattr(self._client, "disco")
        items = disco.items(jid, COMMANDS_NS, timeout)
        return [CommandInfo(item.jid, item.node, item.name) for item in items if item.node]

    def execute(self, jid: JID | str | None, node: str, form: Form | None = None,
                timeout: float | None = None) -> CommandSession:
        """Run command `node` of `jid` (default: our server); the
        [CommandSession][simplexmpp.ext.commands.CommandSession] tells its status, form and
        notes. Raises [CommandError][simplexmpp.ext.commands.CommandError] when the
        responder refuses (`forbidden`, `item-not-found` …)."""
        target = JID(jid) if jid is not None else JID(self._client.account.domain)
        session = CommandSession(self, target, node)
        return self._send(session, "execute", form, timeout)

    def _send(self, session: CommandSession, action: str, form: Form | None,
              timeout: float | None) -> CommandSession:
        command = ET.Element(_COMMAND, node=session.node, action=action)
        if session.session_id:
            command.set("sessionid", session.session_id)
        if form is not None:
            command.append(form.to_element())
        try:
            reply = self._client.iq(Iq.set(session.jid, command), timeout)
        except CommandError:
            raise
        except IqError as exc:
            raise CommandError.from_iq_error(exc) from None
        answer = reply.payload
        if answer is None or answer.tag != _COMMAND:
            raise CommandError("bad-request", "modify",
                               f"the answer of {session.jid} to command {session.node!r} "
                               "has no <command/>", reply)
        session._update(answer)
        return session


def _notes(items: list[Note | str]) -> list[Note]:
    notes = []
    for item in items:
        if isinstance(item, Note):
            if item.type not in _NOTE_TYPES:
                raise ValueError(f"a note type is info, warn or error, not {item.type!r}")
            notes.append(item)
        else:
            notes.append(Note("info", str(item)))
    return notes
