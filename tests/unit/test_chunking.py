"""Unit tests for humanizer.chunking: splitting, budgets, structures, reassembly."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from humanizer.chunking import Chunk, ChunkingOptions, count_tokens, reassemble, split_document
from humanizer.chunking.blocks import parse_blocks
from humanizer.chunking.sentences import sentence_spans

pytestmark = pytest.mark.unit

SMALL = ChunkingOptions(max_tokens=16)


def identity(chunks: list[Chunk]) -> str:
    return reassemble(chunks, [c.text for c in chunks])


def check_invariants(text: str, chunks: list[Chunk], options: ChunkingOptions) -> None:
    """Everything that must hold for any split."""
    assert identity(chunks) == text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks[:-1]:
        assert c.suffix == ""
    pos = 0
    for c in chunks:
        assert c.start == pos + len(c.prefix)
        assert text[c.start : c.end] == c.text
        assert c.prefix.strip() == ""
        assert c.suffix.strip() == ""
        pos = c.end
        if c.kind == "prose":
            assert c.text == c.text.strip() and c.text
            if not c.oversized:
                assert c.tokens <= options.max_tokens
        assert c.tokens == count_tokens(c.text)


def kinds(chunks: list[Chunk]) -> list[tuple[str, str | None]]:
    return [(c.kind, c.structure) for c in chunks]


# --- round trip: hand cases ----------------------------------------------------------------------------

ROUND_TRIP_CASES = [
    "",
    " ",
    "\n",
    "\r\n\r\n",
    " \t\n  \n",
    "a",
    "  leading and trailing  \n\n",
    "no trailing newline",
    "line one\r\nline two\r\n\r\nsecond paragraph\r\n",
    "old mac\rline endings\r\rpara two",
    "tabs\tinside\n\n\tindented paragraph\n",
    "unicode: café, naïve, 日本語のテキスト。二文目！\n\nemoji 👩‍👩‍👧 ok\n",
    "\n\n\nmany\n\n\n\nblank lines\n\n\n",
    "# Heading\nText right under.\n```\ncode\n```\nafter code\n",
    "```\nunterminated fence\n\nstill code\n\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\ntext after",
    "- a\n- b\n\n  continued\n- c\nlazy\n\nparagraph",
    "<div>\n<p>html</p>\n</div>\n\nprose",
    "Title\n=====\n\nSub\n---\n\n***\n",
    "---\ntitle: x\n---\n\nBody text.",
    "\x0c\x0b\u2028odd whitespace\u2028\x85",
    "word " * 50,
]


@pytest.mark.parametrize("text", ROUND_TRIP_CASES)
@pytest.mark.parametrize("passthrough", [True, False])
@pytest.mark.parametrize("max_tokens", [16, 400])
def test_round_trip_hand_cases(text: str, passthrough: bool, max_tokens: int) -> None:
    options = ChunkingOptions(max_tokens=max_tokens, passthrough_structures=passthrough, context_chars=10)
    chunks = split_document(text, options)
    check_invariants(text, chunks, options)


def test_empty_document_gives_no_chunks() -> None:
    assert split_document("") == []
    assert reassemble([], []) == ""


@pytest.mark.parametrize("text", [" ", "\n\n", " \t\r\n "])
def test_whitespace_only_document_is_one_passthrough_chunk(text: str) -> None:
    chunks = split_document(text)
    assert len(chunks) == 1
    (c,) = chunks
    assert (c.kind, c.structure, c.text, c.prefix, c.suffix) == ("passthrough", "whitespace", text, "", "")
    assert identity(chunks) == text


def test_prefix_and_suffix_hold_surrounding_whitespace() -> None:
    text = "\n\n  First para.\n\nSecond para.  \n\n"
    chunks = split_document(text, ChunkingOptions(max_tokens=16))
    assert [c.text for c in chunks] == ["First para.\n\nSecond para."]
    assert chunks[0].prefix == "\n\n  "
    assert chunks[0].suffix == "  \n\n"


def test_reassemble_places_outputs_with_original_separators() -> None:
    text = "Alpha one. Alpha two.\n\n```\ncode\n```\n\r\nBeta.\n"
    chunks = split_document(text)
    assert kinds(chunks) == [("prose", None), ("passthrough", "code"), ("prose", None)]
    outputs = ["ALPHA", "ignored for passthrough", "BETA"]
    assert reassemble(chunks, outputs) == "ALPHA\n\n```\ncode\n```\n\r\nBETA\n"
    assert reassemble(chunks, {0: "A", 2: "B"}) == "A\n\n```\ncode\n```\n\r\nB\n"
    assert reassemble(chunks, [" A \n", None, None], strip_outputs=True) == "A\n\n```\ncode\n```\n\r\nBeta.\n"


def test_reassemble_rejects_bad_outputs() -> None:
    chunks = split_document("One.\n\n```\nx\n```\n\nTwo.")
    with pytest.raises(ValueError, match="outputs"):
        reassemble(chunks, ["a"])
    with pytest.raises(ValueError, match=r"\[2\]"):
        reassemble(chunks, {0: "a"})
    with pytest.raises(ValueError, match="in order"):
        reassemble(list(reversed(chunks)), ["a", None, "b"])


def test_chunks_are_json_serialisable() -> None:
    chunks = split_document("Hello there.\n\n```py\nx = 1\n```\n", ChunkingOptions(context_chars=5))
    for c in chunks:
        data = json.loads(c.model_dump_json())
        assert Chunk.model_validate(data) == c
        assert Chunk.model_validate_json(c.model_dump_json()) == c


def test_options_validation() -> None:
    assert ChunkingOptions().max_tokens == 400
    with pytest.raises(ValueError):
        ChunkingOptions(max_tokens=15)
    with pytest.raises(ValueError):
        ChunkingOptions(context_chars=-1)


# --- structures ----------------------------------------------------------------------------------------

CODE = "```python\ndef f():\n    return 1\n\n\n# not a heading\n| not | table |\n```"


def test_code_block_is_one_passthrough_chunk() -> None:
    text = f"Intro paragraph here.\n\n{CODE}\n\nOutro paragraph."
    chunks = split_document(text, SMALL)
    holding = [c for c in chunks if "def f():" in c.text]
    assert len(holding) == 1
    assert holding[0].text == CODE
    assert (holding[0].kind, holding[0].structure) == ("passthrough", "code")


def test_tilde_fence_and_longer_closing_fence() -> None:
    text = "~~~~\ncode ~~~ still\n~~~~~\nafter"
    chunks = split_document(text)
    assert chunks[0].text == "~~~~\ncode ~~~ still\n~~~~~"
    assert chunks[1].text == "after"


def test_unterminated_fence_runs_to_end_of_document() -> None:
    text = "Prose first.\n\n```\ncode\n\nmore code. With sentences.\n\n"
    chunks = split_document(text, SMALL)
    assert kinds(chunks) == [("prose", None), ("passthrough", "code")]
    assert chunks[1].text == "```\ncode\n\nmore code. With sentences."
    assert chunks[1].suffix == "\n\n"


def test_inline_triple_backticks_are_not_a_fence() -> None:
    blocks = parse_blocks("use ```x``` inline\n\n```a`b\nnot a fence either")
    assert [b.kind for b in blocks] == ["paragraph", "paragraph"]


def test_table_is_not_split() -> None:
    rows = "\n".join(f"| row {i} | value {i} with several words |" for i in range(30))
    table = "| name | value |\n| :--- | ---: |\n" + rows
    text = f"Before the table.\n{table}\n\nAfter."
    for passthrough in (True, False):
        chunks = split_document(text, ChunkingOptions(max_tokens=16, passthrough_structures=passthrough))
        holding = [c for c in chunks if "row 7" in c.text]
        assert len(holding) == 1 and holding[0].text == table
        assert holding[0].structure == "table"
        if not passthrough:
            assert holding[0].kind == "prose" and holding[0].oversized


def test_list_with_nesting_and_continuations_is_one_block() -> None:
    lst = (
        "1. First item\n   continued line\n2. Second item\n   - nested a\n   - nested b\n\n"
        "   Loose paragraph inside item two.\n\n   ```\n   code in list\n\n   ```\n3. Third item"
    )
    text = f"Lead-in:\n\n{lst}\n\nClosing paragraph."
    chunks = split_document(text, SMALL)
    holding = [c for c in chunks if "nested a" in c.text]
    assert len(holding) == 1 and holding[0].text == lst and holding[0].structure == "list"
    assert chunks[-1].text == "Closing paragraph."


def test_list_interrupting_paragraph() -> None:
    blocks = parse_blocks("We have options:\n- one\n- two\nAnd 2. is not a list start here.")
    assert [b.kind for b in blocks] == ["paragraph", "list"]


def test_headings_hr_html_frontmatter_are_passthrough() -> None:
    text = (
        "---\ntitle: Doc\ntags: [a]\n---\n"
        "# Heading one\nParagraph one.\n\nSetext\n======\n\n* * *\n\n"
        "<div class='x'>\n<b>bold</b>\n</div>\n\n<!-- comment\n\nstill comment -->\nEnd."
    )
    chunks = split_document(text)
    assert kinds(chunks) == [
        ("passthrough", "frontmatter"),
        ("passthrough", "heading"),
        ("prose", None),
        ("passthrough", "heading"),
        ("passthrough", "hr"),
        ("passthrough", "html"),
        ("passthrough", "html"),
        ("prose", None),
    ]
    assert chunks[6].text == "<!-- comment\n\nstill comment -->"
    assert identity(chunks) == text


def test_inline_html_at_line_start_is_prose() -> None:
    chunks = split_document("<b>Note:</b> this sentence is prose.")
    assert kinds(chunks) == [("prose", None)]


def test_structures_stay_whole_inside_prose_when_not_passthrough() -> None:
    text = "# Title\n\nSome text.\n\n```\nx = 1\n```\n\n- a\n- b\n\nMore text."
    options = ChunkingOptions(max_tokens=400, passthrough_structures=False)
    chunks = split_document(text, options)
    assert len(chunks) == 1 and chunks[0].kind == "prose" and chunks[0].text == text
    check_invariants(text, chunks, options)


def test_oversized_structure_is_its_own_flagged_chunk() -> None:
    code = "```\n" + "\n".join(f"value_{i} = compute({i}) + offset" for i in range(40)) + "\n```"
    text = f"Short intro.\n\n{code}\n\nShort outro."
    options = ChunkingOptions(max_tokens=32, passthrough_structures=False)
    chunks = split_document(text, options)
    assert [c.text for c in chunks] == ["Short intro.", code, "Short outro."]
    assert [c.oversized for c in chunks] == [False, True, False]
    assert chunks[1].kind == "prose" and chunks[1].structure == "code" and chunks[1].tokens > 32
    check_invariants(text, chunks, options)


# --- packing, sentences, budget ------------------------------------------------------------------------


def test_small_paragraphs_are_packed_together() -> None:
    paras = [f"Paragraph number {i} is short." for i in range(10)]
    text = "\n\n".join(paras)
    chunks = split_document(text, ChunkingOptions(max_tokens=40))
    assert 1 < len(chunks) < 10
    for c in chunks:  # only whole paragraphs
        assert all(p.strip() in paras for p in c.text.split("\n\n"))
    assert identity(chunks) == text


def test_oversized_paragraph_is_split_at_sentences() -> None:
    sentences = [
        f"Sentence {i} talks about Dr. Smith and the U.S. economy, e.g. 3.5 percent." for i in range(20)
    ]
    text = " ".join(sentences)
    options = ChunkingOptions(max_tokens=64)
    chunks = split_document(text, options)
    assert len(chunks) > 1
    check_invariants(text, chunks, options)
    for c in chunks:
        assert c.text.startswith("Sentence ") and c.text.endswith("percent.")
        assert c.prefix in ("", " ")


def test_oversized_sentence_is_split_between_words() -> None:
    text = " ".join(f"word{i}" for i in range(2000))
    options = ChunkingOptions(max_tokens=50)
    chunks = split_document(text, options)
    check_invariants(text, chunks, options)
    assert all(c.text.split() == [w for w in c.text.split(" ") if w] for c in chunks)
    words = [w for c in chunks for w in c.text.split()]
    assert words == text.split()  # no word was cut


def test_huge_word_is_hard_split() -> None:
    text = "x" * 200_000
    options = ChunkingOptions(max_tokens=400)
    chunks = split_document(text, options)
    assert len(chunks) > 1
    check_invariants(text, chunks, options)
    assert all(c.prefix == "" for c in chunks)


def test_hard_split_avoids_cutting_combining_marks() -> None:
    text = "e\u0301" * 3000
    options = ChunkingOptions(max_tokens=20)
    chunks = split_document(text, options)
    check_invariants(text, chunks, options)
    assert all(c.text[0] == "e" for c in chunks)


def test_200kb_single_paragraph_with_sentences() -> None:
    sentence = "The committee reviewed the proposal and approved it with minor changes. "
    text = (sentence * (200_000 // len(sentence) + 1)).strip()
    options = ChunkingOptions(max_tokens=400)
    chunks = split_document(text, options)
    check_invariants(text, chunks, options)
    assert all(c.text.endswith("changes.") for c in chunks)


def test_context_snippets() -> None:
    text = "First paragraph talks about apples and pears.\n\n```\ncode\n```\n\nSecond one is about oranges."
    chunks = split_document(text, ChunkingOptions(max_tokens=16, context_chars=20))
    first, code, second = chunks
    assert first.context_before is None
    assert first.context_after == "Second one is about"
    assert code.context_before is None and code.context_after is None
    assert second.context_before == "apples and pears."
    assert second.context_after is None
    assert identity(chunks) == text  # context never leaks into the output
    assert all(c.context_before is None for c in split_document(text, ChunkingOptions(max_tokens=16)))


def test_sentence_splitter_heuristics() -> None:
    text = (
        'He met Dr. Smith in the U.S. on Jan. 5. Prices rose, e.g. by 3.5 percent... Then "Stop!" he said. '
        '"Go." She left (quietly.) Really?! Yes. J. R. R. Tolkien wrote. Fig. 3 shows it. 你好。世界！'
    )
    got = [text[s:e] for s, e in sentence_spans(text)]
    assert got == [
        "He met Dr. Smith in the U.S. on Jan. 5.",
        "Prices rose, e.g. by 3.5 percent...",
        'Then "Stop!" he said.',
        '"Go."',
        "She left (quietly.)",
        "Really?!",
        "Yes.",
        "J. R. R. Tolkien wrote.",
        "Fig. 3 shows it.",
        "你好。",
        "世界！",
    ]


# --- property tests ------------------------------------------------------------------------------------

LINE_ENDINGS = st.sampled_from(["\n", "\r\n", "\n\n", "\r\n\r\n", "\n\n\n"])
WORDS = st.sampled_from(
    [
        "the",
        "Dr.",
        "U.S.",
        "e.g.",
        "3.5",
        "model",
        "text",
        "naïve",
        "日本",
        "—",
        "“quoted”",
        "end.",
        "Why?",
        "x" * 30,
    ]
)


@st.composite
def sentences_st(draw: st.DrawFn) -> str:
    words = draw(st.lists(WORDS, min_size=1, max_size=25))
    return " ".join(words).capitalize() + draw(st.sampled_from([".", "!", "?", "...", ""]))


@st.composite
def paragraph_st(draw: st.DrawFn) -> str:
    sep = draw(st.sampled_from([" ", "  ", "\n", "\t"]))
    return sep.join(draw(st.lists(sentences_st(), min_size=1, max_size=8)))


@st.composite
def block_st(draw: st.DrawFn) -> str:
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    kind = draw(st.sampled_from(["para", "para", "para", "code", "table", "list", "heading", "html", "hr"]))
    if kind == "para":
        return draw(paragraph_st())
    if kind == "code":
        fence = draw(st.sampled_from(["```", "~~~", "````"]))
        body = nl.join(
            draw(st.lists(st.sampled_from(["x = 1", "", "# c", "- y", "| a |", "```x"]), max_size=6))
        )
        closed = draw(st.booleans())
        return f"{fence}py{nl}{body}" + (f"{nl}{fence}" if closed else "")
    if kind == "table":
        rows = draw(st.integers(0, 5))
        return nl.join(
            ["| a | b |", "|---|:-:|"] + [f"| {draw(sentences_st())} | {i} |" for i in range(rows)]
        )
    if kind == "list":
        items = draw(st.lists(sentences_st(), min_size=1, max_size=5))
        marker = draw(st.sampled_from(["-", "*", "1."]))
        return nl.join(f"{marker} {item}" + draw(st.sampled_from(["", f"{nl}  continued"])) for item in items)
    if kind == "heading":
        return draw(st.sampled_from(["#", "##", "######"])) + " " + draw(sentences_st())
    if kind == "html":
        return f"<div>{nl}{draw(sentences_st())}{nl}</div>"
    return draw(st.sampled_from(["---", "***", "_ _ _"]))


@st.composite
def markdown_st(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(block_st(), max_size=12))
    seps = [draw(LINE_ENDINGS) for _ in blocks]
    lead = draw(st.sampled_from(["", "\n", "  ", "\r\n\r\n"]))
    trail = draw(st.sampled_from(["", "\n", "  \n", "\r\n"]))
    return lead + "".join(b + s for b, s in zip(blocks, seps, strict=True)).rstrip("\r\n") + trail


OPTIONS = st.builds(
    ChunkingOptions,
    max_tokens=st.sampled_from([16, 17, 40, 100, 400]),
    passthrough_structures=st.booleans(),
    context_chars=st.sampled_from([0, 15]),
)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(text=st.text(), options=OPTIONS)
def test_property_round_trip_arbitrary_text(text: str, options: ChunkingOptions) -> None:
    check_invariants(text, split_document(text, options), options)


@PROPERTY
@given(
    text=st.text(alphabet=st.sampled_from(list("ab .!?\n\r\t`|#-*>1<~é日\u0301 ")), max_size=400),
    options=OPTIONS,
)
def test_property_round_trip_structure_characters(text: str, options: ChunkingOptions) -> None:
    check_invariants(text, split_document(text, options), options)


@PROPERTY
@given(text=markdown_st(), options=OPTIONS)
def test_property_markdown_documents(text: str, options: ChunkingOptions) -> None:
    chunks = split_document(text, options)
    check_invariants(text, chunks, options)
    # Every structure (code, table, list, ...) lies inside exactly one chunk.
    for block in parse_blocks(text):
        if block.kind == "paragraph":
            continue
        body = text[block.start : block.end]
        first = block.start + len(body) - len(body.lstrip())  # prose chunks drop surrounding whitespace
        last = block.start + len(body.rstrip())
        inside = [c for c in chunks if c.start <= first and last <= c.end]
        assert len(inside) == 1, block
        if options.passthrough_structures:
            assert inside[0].kind == "passthrough"


@PROPERTY
@given(text=markdown_st(), options=OPTIONS, data=st.data())
def test_property_reassemble_substitutes_outputs(
    text: str, options: ChunkingOptions, data: st.DataObject
) -> None:
    chunks = split_document(text, options)
    outputs = [f"<{c.index}>" if c.kind == "prose" else None for c in chunks]
    expected = "".join(
        c.prefix + (f"<{c.index}>" if c.kind == "prose" else c.text) + c.suffix for c in chunks
    )
    assert reassemble(chunks, outputs) == expected


# --- performance sanity --------------------------------------------------------------------------------


def _megabyte_document() -> str:
    paragraph = (
        "Large language models often produce text with a recognisable rhythm. Dr. Lee noted, e.g., that "
        "sentences tend to have similar lengths (about 20 words). Rewriting them changes that! "
    )
    parts = []
    size = 0
    i = 0
    while size < 1_000_000:
        code = f"## Section {i}\n\n```python\nprint({i})\n```"
        block = code if i % 25 == 0 else paragraph * (1 + i % 4)
        parts.append(block)
        size += len(block) + 2
        i += 1
    return "\n\n".join(parts)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(_megabyte_document(), id="1MB-markdown"),
        pytest.param(_megabyte_document().replace("\n\n", " "), id="1MB-one-paragraph"),
        pytest.param(("lorem ipsum dolor " * 60_000)[:1_000_000], id="1MB-one-sentence"),
        pytest.param("ab" * 500_000, id="1MB-one-word"),
    ],
)
def test_performance_one_megabyte(text: str) -> None:
    options = ChunkingOptions(max_tokens=400)
    started = time.perf_counter()
    chunks = split_document(text, options)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"split took {elapsed:.1f}s"
    assert identity(chunks) == text
    assert all(c.tokens <= 400 for c in chunks if c.kind == "prose")
