"""One detector (humanizer.spans): what masking protects is exactly what verification checks.

For every text of a corpus (samples/, tests/data/ and the tricky cases below) the URL, e-mail and quotation
facts verification extracts are exactly those of the spans masking swaps for placeholders, each masked URL,
e-mail address and quotation is such a fact, and the offline rewriter keeps every such span verbatim.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanizer import spans
from humanizer.chunking import mask, unmask
from humanizer.providers.offline import rewrite_text
from humanizer.providers.prompts import Style
from humanizer.verification import extract_facts, verify_chunk

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("urls", "emails", "quotes")
KIND_OF = {"urls": "url", "emails": "email", "quotes": "quote"}

TRICKY = [
    # URLs with trailing punctuation
    "See https://example.com/a/b. Then https://example.com/c, and https://example.com/d; or https://example.com/e: ok",
    "Really? https://example.com/q?x=1&y=2! Or (https://example.com/in-parens). Or https://example.com/x...",
    "Wikipedia: https://en.wikipedia.org/wiki/Foo_(bar), and https://en.wikipedia.org/wiki/Baz_(qux)).",
    "Quoted link “https://example.com/curly” and 'https://example.com/single' here.",
    "An ellipsis https://example.com/wait… and a full stop https://example.jp/page。",
    "Emphasis **https://example.com/bold** and _https://example.com/em_ and ~~www.example.org/strike~~.",
    "FTP too: ftp://files.example.org/pub/file.tar.gz, and HTTPS://EXAMPLE.COM/UPPER and http:// alone.",
    # e-mail addresses
    "Write to <jane.doe@example.org> or <ops+alerts@example.co.uk>, or mailto:john_smith@example.com.",
    "Contact: Jane Doe <jane@example.org>; cc: a.b-c@sub.example.io.",
    "Not an address: user@localhost, a@b, or @handle; but x@y.example.com is.",
    "The URL https://user@example.com/path holds no e-mail address.",
    # nested quotes
    "“She said ‘never again’ and left,” he wrote.",
    "\"He told me 'we will ship on Friday' twice,\" she said.",
    "«Il a dit “bonjour” puis “au revoir”» et puis rien.",
    "„Er sagte ‚nein‘ zu mir“, schrieb sie.",
    # curly quotes
    "The memo called it “a temporary measure” and ‘a necessary step’.",
    "A quote across lines: “the first line\nand the second line” ends here.",
    "No quote across a blank line: “first paragraph\n\nsecond paragraph” here.",
    "Apostrophes are not quotes: don’t, it’s, the dogs’ bowls, ’90s music, 'Tis, rock 'n' roll, a 12\" pizza.",
    "Empty marks “” and “...” and \"—\" carry nothing.",
    # markdown links
    "Read [the guide](https://docs.example.org/guide?x=1#top) and [home](https://example.com/).",
    "Autolink <https://example.com/auto> and bare www.example.net/path.",
    "Link with a title [docs](https://example.com/docs \"The Docs\") here.",
    "Link text is a URL: [https://example.com/a](https://example.com/b).",
    "Image ![chart](https://example.com/img/chart.png) inline.",
    # facts inside other protected spans
    "Run `curl https://api.example.com/v1 -d \"a b\"` to test, then $x = \"y\"$ math.",
    "As shown [1], (Smith et al., 2020) and [@doe99] wrote \"results hold\" at https://example.org/paper.",
    "```\nfetch(\"https://example.com/in-fence\")\n```\nAfter the fence.",
    "Placeholders ⟦P1⟧ and brackets ⟦https://example.com/in-marker⟧ stay.",
    "Glued: Oh—https://example.com/dash—ok, (see www.example.com/x), [www.example.com/y], {https://x.org/z}.",
]


def _corpus() -> list[tuple[str, str]]:
    files = sorted([*ROOT.glob("samples/*.md"), *ROOT.glob("tests/data/**/*.txt")])
    assert files, "the samples/ and tests/data/ corpus is missing"
    cases = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in files]
    return cases + [(f"tricky-{i}", text) for i, text in enumerate(TRICKY)]


CORPUS = _corpus()


def shared_facts(text: str) -> set[tuple[str, str]]:
    facts = extract_facts(text)
    return {(category, value) for category in SHARED for value in facts.category(category)}


def assert_masked_is_verified(text: str) -> None:
    masked = mask(text)
    assert unmask(masked.text, masked.spans) == text
    from_spans: set[tuple[str, str]] = set()
    for span in masked.spans:
        own = shared_facts(span.original)
        from_spans |= own
        # Each masked URL, e-mail or quotation, read alone, is a fact of its own kind.
        if span.kind in KIND_OF.values():
            assert any(KIND_OF[category] == span.kind for category, _ in own), span
    # The URL, e-mail and quotation facts of the text are exactly those of its masked spans: nothing is
    # checked that the model could change, nothing masked goes unchecked (a masked quotation, code or math
    # span also protects the URL, e-mail or quotation inside it, which is checked too).
    assert shared_facts(text) == from_spans


@pytest.mark.parametrize(("name", "text"), CORPUS, ids=[name for name, _ in CORPUS])
def test_masked_spans_are_exactly_the_verified_facts(name: str, text: str) -> None:
    assert_masked_is_verified(text)


def test_the_corpus_has_every_shared_kind() -> None:
    kinds = {span.kind for _, text in CORPUS for span in mask(text).spans}
    assert {"url", "email", "quote", "code", "math", "citation", "marker"} <= kinds
    facts = set().union(*(shared_facts(text) for _, text in CORPUS))
    assert {category for category, _ in facts} == set(SHARED)


def originals(text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.original) for s in mask(text).spans]


@pytest.mark.parametrize(
    ("text", "spans_", "urls", "emails", "quotes"),
    [
        (TRICKY[0], [("url", f"https://example.com/{p}") for p in ("a/b", "c", "d", "e")],
         [f"https://example.com/{p}" for p in ("a/b", "c", "d", "e")], [], []),
        (TRICKY[2], [("url", "https://en.wikipedia.org/wiki/Foo_(bar)"), ("url", "https://en.wikipedia.org/wiki/Baz_(qux)")],
         ["https://en.wikipedia.org/wiki/Baz_(qux)", "https://en.wikipedia.org/wiki/Foo_(bar)"], [], []),
        (TRICKY[4], [("url", "https://example.com/wait"), ("url", "https://example.jp/page")],
         ["https://example.com/wait", "https://example.jp/page"], [], []),
        (TRICKY[5], [("url", "https://example.com/bold"), ("url", "https://example.com/em"),
                     ("url", "www.example.org/strike")],
         ["https://example.com/bold", "https://example.com/em", "www.example.org/strike"], [], []),
        (TRICKY[6], [("url", "ftp://files.example.org/pub/file.tar.gz"), ("url", "HTTPS://EXAMPLE.COM/UPPER")],
         ["ftp://files.example.org/pub/file.tar.gz", "https://example.com/UPPER"], [], []),
        (TRICKY[7], [("email", "jane.doe@example.org"), ("email", "ops+alerts@example.co.uk"),
                     ("email", "john_smith@example.com")],
         [], ["jane.doe@example.org", "john_smith@example.com", "ops+alerts@example.co.uk"], []),
        (TRICKY[9], [("email", "x@y.example.com")], [], ["x@y.example.com"], []),
        (TRICKY[10], [("url", "https://user@example.com/path")], ["https://user@example.com/path"], [], []),
        (TRICKY[11], [("quote", "“She said ‘never again’ and left,”")], [], [],
         ["She said ‘never again' and left", "never again"]),
        (TRICKY[12], [("quote", "\"He told me 'we will ship on Friday' twice,\"")], [], [],
         ["He told me 'we will ship on Friday' twice", "we will ship on Friday"]),
        (TRICKY[13], [("quote", "«Il a dit “bonjour” puis “au revoir”»")], [], [],
         ["Il a dit “bonjour” puis “au revoir”", "au revoir", "bonjour"]),
        (TRICKY[16], [("quote", "“the first line\nand the second line”")], [], [],
         ["the first line and the second line"]),
        (TRICKY[17], [], [], [], []),
        (TRICKY[18], [], [], [], []),
        (TRICKY[19], [], [], [], []),
        (TRICKY[20], [("url", "https://docs.example.org/guide?x=1#top"), ("url", "https://example.com/")],
         ["https://docs.example.org/guide?x=1#top", "https://example.com"], [], []),
        (TRICKY[21], [("url", "https://example.com/auto"), ("url", "www.example.net/path")],
         ["https://example.com/auto", "www.example.net/path"], [], []),
        (TRICKY[22], [("url", "https://example.com/docs"), ("quote", "\"The Docs\"")],
         ["https://example.com/docs"], [], ["The Docs"]),
        (TRICKY[23], [("url", "https://example.com/a"), ("url", "https://example.com/b")],
         ["https://example.com/a", "https://example.com/b"], [], []),
        (TRICKY[25], [("code", "`curl https://api.example.com/v1 -d \"a b\"`"), ("math", "$x = \"y\"$")],
         ["https://api.example.com/v1"], [], ["a b", "y"]),
        (TRICKY[28], [("marker", "⟦P1⟧"), ("marker", "⟦https://example.com/in-marker⟧")],
         ["https://example.com/in-marker"], [], []),
    ],
)
def test_tricky_spans_and_facts(
    text: str, spans_: list[tuple[str, str]], urls: list[str], emails: list[str], quotes: list[str]
) -> None:
    assert originals(text) == spans_
    facts = extract_facts(text)
    assert (facts.urls, facts.emails, facts.quotes) == (urls, emails, quotes)


def test_quotation_facts_read_curly_apostrophes_as_straight() -> None:
    facts = extract_facts("“She said ‘never again’ and left,” he wrote.")
    assert facts.surface("quotes", "never again") == "never again"
    assert verify_chunk(0, TRICKY[11], "He wrote: “She said ‘never again’ and left.”").missing.quotes == []


# --- the offline rewriter keeps what masking protects ---------------------------------------------------------


@pytest.mark.parametrize("style", list(Style))
def test_offline_rewriter_keeps_every_protected_span(style: Style) -> None:
    for _, text in CORPUS:
        out = rewrite_text(text, style)
        for span in mask(text).spans:
            assert out.count(span.original) >= text.count(span.original), (span, style)
        report = verify_chunk(0, text, out)
        assert (report.missing.urls, report.missing.emails, report.missing.quotes) == ([], [], []), style


def test_offline_rewriter_protects_a_quotation_across_lines() -> None:
    text = "They wrote “we utilize robust tools\nin order to win” and we utilize them."
    out = rewrite_text(text, "neutral")
    assert "“we utilize robust tools\nin order to win”" in out
    assert out.endswith("and we use them.")


# --- the detector itself --------------------------------------------------------------------------------------

# The same patterns as one alternation, leftmost-first (how masking found spans before the kinds were
# searched one by one): find_spans must agree with it on every input.
_ALTERNATION = re.compile("|".join(f"(?P<k{i}>{pattern})" for i, (_, pattern) in enumerate(spans._PATTERNS)))


def _by_alternation(text: str) -> list[spans.Span]:
    found: list[spans.Span] = []
    pos = 0
    while (m := _ALTERNATION.search(text, pos)) is not None:
        kind = spans._PATTERNS[int((m.lastgroup or "k0")[1:])][0]
        start, end = m.span()
        body = text[start + 1 : end - 1]
        if kind == "quote" and (
            (text[start] == "'" and not any(c.isspace() for c in body)) or not any(c.isalnum() for c in body)
        ):
            pos = start + 1
            continue
        if kind == "url":
            url = spans.trim_url(m.group())
            prefix = re.match(r"(?i)(?:https?|ftp)://|www\.", url)
            if prefix is None or prefix.end() == len(url):
                pos = m.end()
                continue
            end = start + len(url)
        found.append(spans.Span(start, end, kind))
        pos = end
    return found


TOKENS = st.sampled_from([
    "word", " ", "\n", "\n\n", "`", "``", "```", "~~~", "$", "$$", "\\(", "\\)", "\\[", "\\]", "[", "]", "(", ")",
    "@", '"', "'", "“", "”", "‘", "’", "«", "»", "„", "⟦", "⟧", "⟦P1⟧", "http://", "https://a.b/c", "ftp://x.y",
    "www.", "www.e.com", "a@b.co", "j_d@x.org", "<", ">", "Smith", "et al.", ", 2020", "[1]", "x", "1", ".", ",",
    "...", "!", "it's", "don’t", "*", "_", "…", "https://x.com/a_(b)", "](", "Www.", "12", "-",
])  # fmt: skip
SPANISH = st.lists(TOKENS, max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(SPANISH, st.text(max_size=200)))
def test_find_spans_is_the_leftmost_first_alternation(text: str) -> None:
    assert spans.find_spans(text) == _by_alternation(text)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(SPANISH, st.lists(st.one_of(TOKENS, st.text(max_size=3)), max_size=40).map("".join)))
def test_property_masked_is_verified(text: str) -> None:
    assert_masked_is_verified(text)


@pytest.mark.parametrize(
    "text", ["@www.a@b.co", "x @www.a@b.co y", "wordhttp://www.a@b.co", "a@b@c.co", "www.a@b.co", "@a.b@c.co"]
)
def test_a_span_has_the_same_kind_in_context_and_alone(text: str) -> None:
    """Found by Hypothesis: after an ``@`` or ``/`` the URL rule does not start at ``www.`` but the e-mail
    rule did, so ``www.a@b.co`` was masked as an e-mail that, read alone, is a URL."""
    assert_masked_is_verified(text)
    assert ("email", "www.a@b.co") not in originals(text)


def test_fact_spans_lie_inside_protected_spans() -> None:
    text = TRICKY[25] + " " + TRICKY[11] + " " + TRICKY[28]
    top = spans.find_spans(text)
    for fact in spans.fact_spans(text):
        assert any(t.start <= fact.start and fact.end <= t.end for t in top), fact
    assert [s.kind for s in spans.fact_spans(text)] == ["url", "quote", "quote", "quote", "quote", "url"]


@pytest.mark.parametrize(
    ("url", "trimmed"),
    [
        ("https://x.org/a).", "https://x.org/a"),
        ("https://x.org/a_(b)", "https://x.org/a_(b)"),
        ("https://x.org/a](https://x.org/b)", "https://x.org/a"),
        ("https://x.org/a?b=1&c=2.", "https://x.org/a?b=1&c=2"),
        ("https://x.org/a’s", "https://x.org/a’s"),
        ("https://x.org/a…", "https://x.org/a"),
        ("https://x.org/(a)b).", "https://x.org/(a)b"),
    ],
)
def test_trim_url(url: str, trimmed: str) -> None:
    assert spans.trim_url(url) == trimmed
