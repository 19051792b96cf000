"""XEP-0393 Message Styling: a message body parsed into styled spans (sans-IO, pure).

```python
from simplexmpp.styling import parse, STRONG

spans = parse("Hello *world*")
assert "".join(s.text for s in spans) == "Hello *world*"   # nothing is lost
assert [s.text for s in spans if STRONG in s.styles] == ["*", "world", "*"]
```

The result is a flat list of [Span][simplexmpp.styling.Span]s that, joined, give the body
back character for character: styling never loses text, and a renderer that does not know a
style shows the plain text (the XEP's fallback is the body itself). Styling directives (`*`,
the fence lines of a code block, the `>` of a quotation) are spans of their own with
`directive=True`, styled like the text they apply to (§6 recommends showing them that way);
a renderer may also hide them. Offsets count code points (Python `str` indices), as XEP-0426
asks of every offset into a body.

Rules (XEP-0393 version 1.1, §5): blocks first (code blocks, quotations, plain lines), then
spans inside plain lines; nothing is styled inside a code block or an inline `pre` span; a
message carrying `<unstyled xmlns="urn:xmpp:styling:0"/>` is not styled at all
([Message.styling][simplexmpp.stanza.Message.styling] honours it).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

__all__ = ["Span", "parse", "plain_text", "STYLING_NS", "STRONG", "EMPHASIS", "STRIKE", "PRE",
           "CODE_BLOCK", "QUOTE"]

STYLING_NS = "urn:xmpp:styling:0"
"""The XEP-0393 namespace: the disco feature, and the namespace of the `<unstyled/>` hint."""

STRONG = "strong"
"""`*strong*` (§5.2.3), usually bold."""
EMPHASIS = "emphasis"
"""`_emphasis_` (§5.2.2), usually italics."""
STRIKE = "strike"
"""`~strike through~` (§5.2.4)."""
PRE = "pre"
"""Preformatted text inline, between two grave accents (§5.2.5): monospace, nothing styled
inside."""
CODE_BLOCK = "code_block"
"""A preformatted block, from a line starting with three grave accents to a line of just three
(§5.1.2): monospace, nothing styled inside."""
QUOTE = "quote"
"""Inside a quotation (§5.1.3); `Span.quote` tells how deep."""

_SPAN_DIRECTIVES = {"*": STRONG, "_": EMPHASIS, "~": STRIKE, "`": PRE}
_FENCE = "```"


@dataclass(frozen=True)
class Span:
    """A run of the body with one set of styles.

    Attributes:
        text: The characters, exactly as in the body.
        start: Offset of the first character in the body (code points).
        end: Offset just past the last character.
        styles: The styles that apply: [STRONG][simplexmpp.styling.STRONG],
            [EMPHASIS][simplexmpp.styling.EMPHASIS], [STRIKE][simplexmpp.styling.STRIKE],
            [PRE][simplexmpp.styling.PRE], [CODE_BLOCK][simplexmpp.styling.CODE_BLOCK],
            [QUOTE][simplexmpp.styling.QUOTE]; empty for plain text.
        quote: Quotation depth (0 outside quotations).
        directive: Whether these characters are styling directives (markers a renderer may
            hide) rather than text.
    """

    text: str
    start: int
    end: int
    styles: frozenset[str]
    quote: int = 0
    directive: bool = False


MAX_QUOTE_DEPTH = 64
"""Quotations nest at most this deep; a deeper `>` is text of the deepest quotation (bounds the
work on hostile input: each level re-reads its lines)."""


class _Marks:
    """Per-character styles, quote depth and directive flag, merged into spans at the end."""

    def __init__(self, text: str) -> None:
        n = len(text)
        self.text = text
        self.styles: list[frozenset[str]] = [frozenset()] * n
        self.quote = [0] * n
        self.directive = [False] * n

    def add(self, start: int, end: int, style: str) -> None:
        styles = self.styles
        for i in range(start, end):
            styles[i] = styles[i] | {style}

    def spans(self) -> list[Span]:
        spans: list[Span] = []
        text, n = self.text, len(self.text)
        styles, quote, directive = self.styles, self.quote, self.directive
        start = 0
        for i in range(1, n + 1):
            if i == n or styles[i] != styles[start] or quote[i] != quote[start] \
                    or directive[i] != directive[start]:
                depth = quote[start]
                spans.append(Span(text[start:i], start, i,
                                  styles[start] | {QUOTE} if depth else styles[start],
                                  depth, directive[start]))
                start = i
        return spans


def parse(text: str) -> list[Span]:
    """Parse `text` (a message body) into styled spans per XEP-0393.

    Args:
        text: The body.

    Returns:
        Spans in order, covering `text` exactly (an empty body gives an empty list).
    """
    marks = _Marks(text)
    lines: list[tuple[int, int]] = []  # (start, end) of each line, newline excluded
    start = 0
    while True:
        newline = text.find("\n", start)
        if newline < 0:
            lines.append((start, len(text)))
            break
        lines.append((start, newline))
        start = newline + 1
    closers = {char: [j for j in range(1, len(text)) if text[j] == char
                      and not text[j - 1].isspace()] for char in _SPAN_DIRECTIVES}
    work = [(lines, 0)]
    while work:  # a quotation's lines are parsed again as blocks one level deeper
        block_lines, depth = work.pop()
        work.extend(_blocks(marks, block_lines, depth, closers))
    return marks.spans()


def plain_text(text: str) -> str:
    """`text` without its styling directives: what a renderer that hides the markers shows."""
    return "".join(span.text for span in parse(text) if not span.directive)


def _blocks(marks: _Marks, lines: list[tuple[int, int]], depth: int,
            closers: dict[str, list[int]]) -> list[tuple[list[tuple[int, int]], int]]:
    """§5.1: split `lines` (the content of one parent block) into code blocks, quotations and
    plain lines and style them; return the quotations' contents, to be parsed as blocks."""
    text = marks.text
    nested: list[tuple[list[tuple[int, int]], int]] = []
    i, n = 0, len(lines)
    while i < n:
        start, end = lines[i]
        if text.startswith(_FENCE, start, end):
            # §5.1.2: from a line beginning with ``` to a line of exactly ```, or to the end of
            # the parent block (a quotation ends an unclosed code block with it).
            close = next((j for j in range(i + 1, n) if text[lines[j][0]:lines[j][1]] == _FENCE),
                         None)
            last = close if close is not None else n - 1
            for k in range(i, last + 1):
                s, e = lines[k]
                marks.add(s, e + 1 if k < last else e, CODE_BLOCK)  # with the newlines between
            for s in range(start, end):
                marks.directive[s] = True
            if close is not None:
                for s in range(lines[close][0], lines[close][1]):
                    marks.directive[s] = True
            i = last + 1
        elif start < end and text[start] == ">" and depth < MAX_QUOTE_DEPTH:
            # §5.1.3: consecutive lines beginning with '>'; each loses the '>' and then its first
            # leading whitespace character, and the rest is parsed again as child blocks.
            j = i
            children: list[tuple[int, int]] = []
            while j < n and lines[j][0] < lines[j][1] and text[lines[j][0]] == ">":
                s, e = lines[j]
                content = s + 1
                if content < e and text[content].isspace():
                    content += 1
                for k in range(s, content):
                    marks.directive[k] = True
                # the line, and the newline after it unless the quotation ends there
                for k in range(s, e + 1 if j + 1 < n and lines[j + 1][0] < lines[j + 1][1]
                               and text[lines[j + 1][0]] == ">" else e):
                    marks.quote[k] = depth + 1
                children.append((content, e))
                j += 1
            nested.append((children, depth + 1))
            i = j
        else:
            _spans(marks, start, end, closers)
            i += 1
    return nested


def _spans(marks: _Marks, start: int, end: int, closers: dict[str, list[int]]) -> None:
    """§5.2: the spans of one plain line (or of the inside of a span), matched lazily from the
    start. An opening directive stands at the start of the line, after whitespace or after
    another opening directive (the start of the span it opens inside), and is not followed by
    whitespace; its closing directive is the first same character after it that is not
    preceded by whitespace; between them there is text (so `**` and `****` stay plain).
    `closers` lists, per directive character, the offsets not preceded by whitespace."""
    text = marks.text
    i = start
    while i < end:
        char = text[i]
        style = _SPAN_DIRECTIVES.get(char)
        if (style is not None and (i == start or text[i - 1].isspace())
                and i + 1 < end and not text[i + 1].isspace()):
            # the content must hold a character other than the directive itself
            first_text = i + 1
            while first_text < end and text[first_text] == char:
                first_text += 1
            candidates = closers[char]
            k = bisect_left(candidates, max(i + 2, first_text + 1))
            if k < len(candidates) and candidates[k] < end:
                close = candidates[k]
                marks.add(i, close + 1, style)
                marks.directive[i] = marks.directive[close] = True
                if style != PRE:  # §5.2.5: nothing is styled inside a preformatted span
                    _spans(marks, i + 1, close, closers)
                i = close + 1
                continue
        i += 1
