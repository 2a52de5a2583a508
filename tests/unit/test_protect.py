"""Unit tests for humanizer.chunking.protect: mask / unmask of protected spans."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanizer.chunking import Masked, PlaceholderError, check_placeholders, mask, unmask

pytestmark = pytest.mark.unit


def originals(text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.original) for s in mask(text).spans]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com/a?b=1&c=2.", [("url", "https://example.com/a?b=1&c=2")]),
        ("(at http://x.org/path)", [("url", "http://x.org/path")]),
        (
            "wiki https://en.wikipedia.org/wiki/Foo_(bar), ok",
            [("url", "https://en.wikipedia.org/wiki/Foo_(bar)")],
        ),
        ("go to www.example.com!", [("url", "www.example.com")]),
        ('link "https://a.b/c"', [("quote", '"https://a.b/c"')]),
        ("write to jane.doe+tag@mail.example.co.uk.", [("email", "jane.doe+tag@mail.example.co.uk")]),
        ("run `pip install x` now", [("code", "`pip install x`")]),
        ("a ``code with ` tick`` b", [("code", "``code with ` tick``")]),
        ("x\n```py\na = `b`\n\nc\n```\ny", [("code", "```py\na = `b`\n\nc\n```")]),
        ("x\r\n  ~~~\r\ncode\r\n  ~~~\r\n", [("code", "  ~~~\r\ncode\r\n  ~~~")]),
        ("inline $E = mc^2$ here", [("math", "$E = mc^2$")]),
        ("display $$\\sum_i x_i$$ here", [("math", "$$\\sum_i x_i$$")]),
        ("paren \\(a+b\\) and bracket \\[x^2\\]", [("math", "\\(a+b\\)"), ("math", "\\[x^2\\]")]),
        (
            "as shown [1] and [12, 13] and [4–6]",
            [("citation", "[1]"), ("citation", "[12, 13]"), ("citation", "[4–6]")],
        ),
        (
            "pandoc [@smith2020] and [see @doe99, p. 3]",
            [("citation", "[@smith2020]"), ("citation", "[see @doe99, p. 3]")],
        ),
        ("found (Smith et al., 2020) too", [("citation", "(Smith et al., 2020)")]),
        ("found (Smith & Jones, 2019; Lee 2021a)", [("citation", "(Smith & Jones, 2019; Lee 2021a)")]),
        ("he said “go now” and left", [("quote", "“go now”")]),
        ('she said "stop that" loudly', [("quote", '"stop that"')]),
        ("the sign read 'no entry here' plainly", [("quote", "'no entry here'")]),
        ("« bonjour » and „hallo“", [("quote", "« bonjour »"), ("quote", "„hallo“")]),
        ("‘I don’t know’ he said", [("quote", "‘I don’t know’")]),
    ],
)
def test_span_types(text: str, expected: list[tuple[str, str]]) -> None:
    assert originals(text) == expected
    masked = mask(text)
    assert unmask(masked.text, masked.spans) == text


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10 today.",
        "Don't touch the dogs' bowls or the cats' toys.",
        "'Tis the season, rock 'n' roll.",
        "A 12\" pizza and a 6' fence.",
        "Call me at noon; email is fine at a.b (not an address).",
        "Use [brackets] and (parentheses, too) freely in 2020.",
        "Markdown [link text](relative/path) stays rewritable.",
        "plain prose with no spans at all.",
        "the word 'single' alone is left to the model",
    ],
)
def test_conservative_non_matches(text: str) -> None:
    masked = mask(text)
    assert masked.spans == ()
    assert masked.text == text


def test_placeholder_format_and_numbering() -> None:
    masked = mask("A `x` then https://a.io and `y`.")
    assert masked.text == "A ⟦P1⟧ then ⟦P2⟧ and ⟦P3⟧."
    assert [s.placeholder for s in masked.spans] == ["⟦P1⟧", "⟦P2⟧", "⟦P3⟧"]


def test_input_containing_placeholder_syntax_is_escaped() -> None:
    text = "Literal ⟦P1⟧ and ⟦weird⟧ and a lone ⟧ and ⟦ plus `code`."
    masked = mask(text)
    assert [s.kind for s in masked.spans] == ["marker", "marker", "marker", "marker", "code"]
    # Every bracket in the masked text belongs to one of our placeholders.
    assert re.sub(r"⟦P\d+⟧", "", masked.text).count("⟦") == 0
    assert re.sub(r"⟦P\d+⟧", "", masked.text).count("⟧") == 0
    assert unmask(masked.text, masked.spans) == text


def test_unmask_allows_reordering_and_rewriting_around_placeholders() -> None:
    masked = mask("See [1] and `code`.")
    assert masked.text == "See ⟦P1⟧ and ⟦P2⟧."
    assert unmask("Using ⟦P2⟧, as ⟦P1⟧ explains.", masked.spans) == "Using `code`, as [1] explains."
    assert masked.unmask("⟦P1⟧⟦P2⟧") == "[1]`code`"


def test_unmask_does_not_rescan_restored_text() -> None:
    text = "fake ⟦P2⟧ then `real`"
    masked = mask(text)
    assert unmask(masked.text, masked.spans) == text


SECRET = "The confidential merger with Globex closes on Friday"


def _masked_secret() -> Masked:
    masked = mask(f"{SECRET} [1], per `memo` and https://intra.example/x.")
    assert masked.text == f"{SECRET} ⟦P1⟧, per ⟦P2⟧ and ⟦P3⟧."
    return masked


@pytest.mark.parametrize(
    ("rewritten", "fields", "fragments"),
    [
        (f"{SECRET}, per ⟦P2⟧ and ⟦P3⟧.", {"missing": ("P1",)}, ["missing P1"]),
        (f"{SECRET} ⟦P1⟧ ⟦P1⟧, ⟦P2⟧ ⟦P3⟧.", {"duplicated": ("P1",)}, ["duplicated P1"]),
        (f"{SECRET} ⟦P1⟧ ⟦P2⟧ ⟦P3⟧ ⟦P4⟧.", {"unknown": ("P4",)}, ["unknown P4"]),
        (f"{SECRET} ⟦P1⟧ ⟦p2⟧ ⟦P3⟧.", {"missing": ("P2",), "malformed": 1}, ["missing P2", "1 malformed"]),
        (f"{SECRET} ⟦P1⟧ [P2] ⟦P3⟧.", {"missing": ("P2",)}, ["missing P2"]),
        (f"{SECRET} ⟦P1⟧ ⟦P2 ⟦P3⟧.", {"missing": ("P2",), "malformed": 1}, ["missing P2"]),
        (f"{SECRET}.", {"missing": ("P1", "P2", "P3")}, ["missing P1, P2, P3"]),
    ],
)
def test_unmask_detects_placeholder_damage(
    rewritten: str, fields: dict[str, object], fragments: list[str]
) -> None:
    masked = _masked_secret()
    with pytest.raises(PlaceholderError) as info:
        unmask(rewritten, masked.spans)
    err = info.value
    assert isinstance(err, ValueError)
    for name, value in fields.items():
        assert getattr(err, name) == value
    message = str(err)
    for fragment in fragments:
        assert fragment in message
    # The message names placeholder ids only: no document text, no original span text.
    for word in [*SECRET.split(), "memo", "intra", "[1]"]:
        assert word not in message
    assert check_placeholders(rewritten, masked.spans) is not None


def test_invented_placeholder_without_any_spans() -> None:
    with pytest.raises(PlaceholderError, match="unknown P1"):
        unmask("text ⟦P1⟧", mask("no spans here").spans)
    assert unmask("text unchanged", ()) == "text unchanged"


def test_masked_is_json_serialisable() -> None:
    masked = mask('Quote "a b" and `c` at https://x.y.')
    restored = Masked.model_validate(json.loads(masked.model_dump_json()))
    assert restored == masked
    assert unmask(restored.text, restored.spans) == 'Quote "a b" and `c` at https://x.y.'


def test_error_message_is_bounded_for_many_placeholders() -> None:
    masked = mask(" ".join(f"[{i}]" for i in range(1, 200)))
    with pytest.raises(PlaceholderError) as info:
        unmask("", masked.spans)
    assert "(+179 more)" in str(info.value)
    assert len(info.value.missing) == 199


# --- property tests ------------------------------------------------------------------------------------

SPANISH = st.sampled_from(
    [
        "word",
        " ",
        "\n",
        "\n\n",
        "`",
        "``",
        "$",
        "$$",
        "\\(",
        "\\)",
        "\\[",
        "\\]",
        "[",
        "]",
        "(",
        ")",
        "@",
        '"',
        "'",
        "“",
        "”",
        "‘",
        "’",
        "«",
        "»",
        "„",
        "⟦",
        "⟧",
        "⟦P1⟧",
        "⟦P",
        "http://",
        "https://a.b/c",
        "www.",
        "a@b.co",
        "Smith",
        "et al.",
        ", 2020",
        "[1]",
        "x",
        "1",
        ".",
        ",",
    ]
)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_property_round_trip_arbitrary_text(text: str) -> None:
    masked = mask(text)
    assert unmask(masked.text, masked.spans) == text


@settings(max_examples=300, deadline=None)
@given(text=st.lists(SPANISH, max_size=40).map("".join))
def test_property_round_trip_span_syntax(text: str) -> None:
    masked = mask(text)
    assert unmask(masked.text, masked.spans) == text
    # Masked text contains no bracket outside our placeholders; spans are numbered 1..n in order.
    assert "⟦" not in re.sub(r"⟦P\d+⟧", "", masked.text)
    assert "⟧" not in re.sub(r"⟦P\d+⟧", "", masked.text)
    assert [s.placeholder for s in masked.spans] == [f"⟦P{i}⟧" for i in range(1, len(masked.spans) + 1)]
    assert re.findall(r"⟦P\d+⟧", masked.text) == [s.placeholder for s in masked.spans]


@settings(max_examples=200, deadline=None)
@given(text=st.lists(SPANISH, max_size=40).map("".join), data=st.data())
def test_property_dropping_a_placeholder_is_detected(text: str, data: st.DataObject) -> None:
    masked = mask(text)
    if not masked.spans:
        return
    victim = data.draw(st.sampled_from([s.placeholder for s in masked.spans]))
    with pytest.raises(PlaceholderError) as info:
        unmask(masked.text.replace(victim, "", 1), masked.spans)
    assert victim[1:-1] in info.value.missing


def test_performance_sanity() -> None:
    import time

    text = (
        "Some prose with `code`, a [1] citation, https://x.io/y and “quotes” plus $5 and 'it is'. " * 12_000
    )
    started = time.perf_counter()
    masked = mask(text)
    restored = unmask(masked.text, masked.spans)
    assert time.perf_counter() - started < 10
    assert restored == text
