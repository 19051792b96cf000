"""XEP-0393 message styling: the XEP's own examples (§5.1, §5.2) and edge cases, plus the
Message accessors (the <unstyled/> hint, reply fallbacks)."""

from __future__ import annotations

import pytest

from simplexmpp import Message
from simplexmpp.styling import (CODE_BLOCK, EMPHASIS, PRE, QUOTE, STRIKE, STRONG, Span, parse,
                                plain_text)
from xml.etree.ElementTree import fromstring


def styled(text: str, style: str) -> list[str]:
    """The texts (directives included) of the runs carrying `style`, joined per span."""
    runs: list[str] = []
    previous_end = -1
    for span in parse(text):
        if style in span.styles:
            if span.start == previous_end:
                runs[-1] += span.text
            else:
                runs.append(span.text)
            previous_end = span.end
    return runs


@pytest.mark.parametrize("text, expected", [
    ("*strong*", ["*strong*"]),
    ("plain *strong* plain", ["*strong*"]),
    ("*strong* plain *strong*", ["*strong*", "*strong*"]),
    ("*strong*plain*", ["*strong*"]),
    ("* plain *strong*", ["*strong*"]),
    ("not strong*", []),
    ("*not strong", []),
    ("*not \n strong*", []),
    ("*not *strong", []),
    ("**", []),
    ("****", []),
    ("* not strong *", []),      # opening followed, closing preceded by whitespace
])
def test_the_xeps_span_examples(text: str, expected: list[str]) -> None:
    assert styled(text, STRONG) == expected


def test_every_span_kind() -> None:
    text = "The full title is _Twelfth Night, or What You Will_ but\n_most_ people shorten it."
    assert styled(text, EMPHASIS) == ["_Twelfth Night, or What You Will_", "_most_"]
    assert styled("Everyone ~dis~likes cake.", STRIKE) == ["~dis~"]
    assert styled("Wow, I can write in `monospace`!", PRE) == ["`monospace`"]


def test_nothing_is_styled_inside_a_preformatted_span() -> None:
    assert styled("This is `*monospace*`", STRONG) == []
    assert styled("This is `*monospace*`", PRE) == ["`*monospace*`"]
    # an opening directive may follow another one
    assert styled("This is *`monospace and bold`*", STRONG) == ["*`monospace and bold`*"]
    assert styled("This is *`monospace and bold`*", PRE) == ["`monospace and bold`"]


def test_spans_nest() -> None:
    text = "_emphasized span containing *strong span*_"
    assert styled(text, EMPHASIS) == [text]
    assert styled(text, STRONG) == ["*strong span*"]


def test_spans_do_not_escape_their_line() -> None:
    text = "There are three blocks in this body marked by parens,\nbut there is no *formatting\n" \
           "as spans* may not escape blocks."
    assert styled(text, STRONG) == []


def test_a_code_block_is_not_styled_and_ends_at_a_line_of_three_backticks() -> None:
    text = "```ignored\n(println *\"Hello, world!\"*)\n```\n\n*after*"
    assert styled(text, STRONG) == ["*after*"]
    assert styled(text, CODE_BLOCK) == ["```ignored\n(println *\"Hello, world!\"*)\n```"]
    fences = [s.text for s in parse(text) if s.directive and CODE_BLOCK in s.styles]
    assert fences == ["```ignored", "```"]


def test_an_unclosed_code_block_ends_with_its_quotation() -> None:
    text = "> ```\n> (println \"Hello, world!\")\n\nThe entire blockquote is a preformatted " \
           "text block, but this line\nis *plaintext*!"
    code = [s.text for s in parse(text) if CODE_BLOCK in s.styles and not s.directive]
    assert "".join(code).strip() == "(println \"Hello, world!\")"
    assert styled(text, STRONG) == ["*plaintext*"]
    assert all(QUOTE not in s.styles for s in parse(text) if "plaintext" in s.text)


def test_an_unclosed_code_block_runs_to_the_end() -> None:
    assert styled("```\n*not strong*", STRONG) == []


def test_quotations_nest_and_lose_one_leading_space() -> None:
    text = ">> That that is, is.\n> Said the old hermit of Prague.\n\nWho?"
    depths = {s.text: s.quote for s in parse(text) if not s.directive}
    assert depths["That that is, is."] == 2
    assert depths["Said the old hermit of Prague."] == 1
    assert depths["\n\nWho?"] == 0
    assert [s.text for s in parse(text) if s.directive] == [">", "> ", "> "]
    # only the first whitespace character is trimmed
    assert [s.text for s in parse(">  two spaces") if not s.directive] == [" two spaces"]


def test_spans_inside_quotations() -> None:
    spans = parse("> a *quoted* word")
    strong = [s for s in spans if STRONG in s.styles]
    assert [s.text for s in strong] == ["*", "quoted", "*"]
    assert all(s.quote == 1 and QUOTE in s.styles for s in strong)


@pytest.mark.parametrize("text", [
    "", "plain", "*a* _b_ ~c~ `d`", "> q\n>> qq\n```\ncode\n```\n", "\n\n\n", "*\n*", "```",
    ">", "> ```\n> x", "_*~`x`~*_", "é *ü* 🎂 _日本_",
])
def test_the_spans_give_the_text_back(text: str) -> None:
    spans = parse(text)
    assert "".join(s.text for s in spans) == text
    assert all(text[s.start:s.end] == s.text for s in spans)
    assert all(a.end == b.start for a, b in zip(spans, spans[1:]))


def test_plain_text_drops_the_directives() -> None:
    assert plain_text("> *strong* and `pre`") == "strong and pre"


def test_hostile_input_is_parsed_in_bounded_time_and_depth() -> None:
    # deep quotations are bounded (no RecursionError), long runs of directives stay linear-ish
    deep = ">" * 5000 + " x"
    assert "".join(s.text for s in parse(deep)) == deep
    many = "*a " * 20000
    assert styled(many, STRONG) == []
    assert "".join(s.text for s in parse("`" * 30000)) == "`" * 30000


def test_message_styling_honours_the_unstyled_hint() -> None:
    msg = Message(fromstring(
        "<message xmlns='jabber:client'><body>*not styled*</body>"
        "<unstyled xmlns='urn:xmpp:styling:0'/></message>"))
    assert msg.unstyled
    assert msg.styling == [Span("*not styled*", 0, 12, frozenset())]
    assert Message(body="*styled*").styling[0].styles == frozenset({STRONG})
    assert Message().styling == []


def test_message_styling_leaves_the_reply_fallback_out() -> None:
    msg = Message(fromstring(
        "<message xmlns='jabber:client'><body>&gt; Anna wrote:\n&gt; We should bake a cake\n"
        "*Great* idea!</body><reply xmlns='urn:xmpp:reply:0' id='m1' to='anna@example.com/t'/>"
        "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>"
        "<body start='0' end='38'/></fallback></message>"))
    assert "".join(s.text for s in msg.styling) == "*Great* idea!"
    assert [s.text for s in msg.styling if STRONG in s.styles] == ["*", "Great", "*"]
