"""Protected spans: the one detector of text a rewrite must keep verbatim, and of the facts it carries.

Three parts of Humanizer agree on this text through this module, so that what is protected is exactly what
is checked:

- masking (``chunking/protect.py``) swaps every span of :func:`find_spans` for a ``⟦Pn⟧`` placeholder
  before the model sees the text, and restores it afterwards;
- the offline rewriter (``providers/offline.py``) leaves the same spans alone;
- verification (``verification/facts.py``) takes its URL, e-mail and quotation facts from
  :func:`fact_spans`: the spans of those kinds that :func:`find_spans` finds, and those inside another
  protected span (a URL in a quotation or in inline code), which the enclosing span protects as part of
  itself. Numbers, dates and names are facts of verification only (nothing masks them); it reads them
  from the text outside the URL and e-mail spans found here.

Kinds, in priority order where two could start at the same position:

``marker``
    ``⟦`` or ``⟧`` already in the input (a whole ``⟦...⟧`` of up to 40 characters, or a lone bracket), so
    that in masked text every bracket belongs to a placeholder we made;
``code``
    a fenced block (when a chunk keeps structures as prose) or inline code with 1–3 backticks;
``math``
    ``$$...$$``, ``\\[...\\]``, ``\\(...\\)`` and ``$...$`` (not prices: ``$5 and $10`` is prose);
``url``
    ``http://``, ``https://``, ``ftp://`` or ``www.`` up to whitespace, ``< > " ` ⟦ ⟧ “ ” « »``; trailing
    sentence punctuation (also markdown emphasis, ``’``, ``…`` and CJK punctuation) and closing brackets
    without their opening one are not part of it (``[text](https://x.org/a).`` gives ``https://x.org/a``);
``email``
    ``local@domain.tld`` with a letter-only top-level domain of two or more letters, not right after an
    ``@`` or ``/`` (where no URL starts at ``www.`` either: ``@www.a@b.co`` and ``x//www.a@b.co`` hold
    neither, so a span has the same kind in its text as alone);
``citation``
    ``[1]``, ``[12, 13]``, ``[4–6]``, pandoc ``[@key]`` / ``[see @key, p. 3]`` and author–year
    ``(Smith et al., 2020)``;
``quote``
    ``“...”``, ``„...“``, ``«...»`` (each may cross single line breaks, not a blank line), straight
    ``"..."`` not glued to a word (``12"`` is inches), ``‘...’`` (an inner ``’`` before a letter is an
    apostrophe) and straight ``'...'`` of several words (a single quoted word may be two apostrophes).
    Every quotation holds at least one letter or digit (``"..."`` is no quotation).

Overlaps resolve leftmost-first: a span found at a position hides everything that starts inside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, NamedTuple

SpanKind = Literal["marker", "code", "math", "url", "email", "citation", "quote"]
KINDS: tuple[SpanKind, ...] = ("marker", "code", "math", "url", "email", "citation", "quote")
#: The kinds verification checks as facts (categories ``urls``, ``emails``, ``quotes``).
FACT_KINDS: frozenset[SpanKind] = frozenset({"url", "email", "quote"})
#: Kinds with no other span inside them: a URL's ``user@host`` is part of the URL, not an e-mail address.
_ATOMIC: frozenset[SpanKind] = frozenset({"url", "email"})


class Span(NamedTuple):
    """``text[start:end]`` is a protected span of kind ``kind``."""

    start: int
    end: int
    kind: SpanKind

    def text(self, source: str) -> str:
        return source[self.start : self.end]

    def inner(self, source: str) -> str:
        """A quotation's text between its marks (every mark is one character); the span itself otherwise."""
        if self.kind == "quote":
            return source[self.start + 1 : self.end - 1]
        return source[self.start : self.end]


# --- the patterns --------------------------------------------------------------------------------------------

_NOT_BLANK_LINE = r"(?:\r\n|\r|\n)(?![ \t]*(?:\r\n|\r|\n))"  # a line break that does not start a blank line
_NAME = r"[A-Z\u00c0-\u00de][\w'’\-]+"
_AUTHORS = rf"{_NAME}(?:(?:,[ \t]*|[ \t]+)(?:and[ \t]+|&[ \t]*)?{_NAME})*(?:[ \t]+et[ \t]+al\.?)?"
_CITE_ONE = rf"{_AUTHORS},?[ \t]+(?:\d{{4}}[a-z]?|n\.d\.)(?:,[ \t]*(?:pp?\.|p\.)[ \t]*\d+(?:[-–]\d+)?)?"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
#: A bracket-marker: also what ``chunking.protect`` reads as one (possibly mangled) placeholder in a reply.
MARKER_PATTERN = r"⟦[^⟦⟧\r\n]{0,40}⟧|[⟦⟧]"

# Each pattern starts with a literal character (a lookbehind that needs the character before a match comes
# after that character: ``"(?<![\w"]")`` is ``(?<![\w"])"``), so that ``re`` scans ahead for it instead of
# trying the pattern at every position.
_PATTERNS: tuple[tuple[SpanKind, str], ...] = (
    ("marker", MARKER_PATTERN),
    # A whole fenced block (when chunks keep structures as prose): before inline code at the same position.
    ("code", r"(?m:^[ \t]*(?P<fence>`{3,}|~{3,})[^\r\n]*(?:\r\n|\r|\n)[\s\S]*?^[ \t]*(?P=fence)[ \t]*(?=[\r\n]|\Z))"),
    ("code", r"(?P<bt>`{1,3})(?!`)[^\r\n]*?[^`\r\n](?P=bt)(?!`)"),
    (
        "math",
        r"\$(?<![\\$]\$)\$(?:[^$]|\$(?!\$)){1,5000}?\$\$"
        r"|\\\[[\s\S]{1,5000}?\\\]"
        r"|\\\([^\r\n]{1,1000}?\\\)"
        r"|\$(?<![\\$\w]\$)(?![\s$])(?:[^$\r\n\\]|\\.){1,500}?(?<![\s\\])\$(?![\d$\w])",
    ),
    (
        "url",
        r"(?:[Hh](?<![^\W_][Hh])[Tt][Tt][Pp][Ss]?://|[Ff](?<![^\W_][Ff])[Tt][Pp]://|[Ww](?<![\w.@/][Ww])[Ww][Ww]\.)"
        r"[^\s<>\"`⟦⟧“”«»]+",
    ),
    ("email", rf"(?<![\w.%+\-@/])\w[\w.%+\-]*+@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,}}(?![\w\-])"),
    (
        "citation",
        r"\[\d{1,4}(?:[ \t]*[,–\-][ \t]*\d{1,4}){0,30}\]"
        r"|\[(?:[^\[\]\r\n@]{0,120}?[\s;])?@\w[^\[\]\r\n]{0,120}\]"
        rf"|\((?:(?:e\.g\.|see|cf\.),?[ \t]+)?{_CITE_ONE}(?:;[ \t]*{_CITE_ONE}){{0,20}}\)",
    ),
    (
        "quote",
        rf"“(?:[^“”\r\n]|{_NOT_BLANK_LINE}){{1,2000}}?”"
        rf"|„(?:[^„“”\r\n]|{_NOT_BLANK_LINE}){{1,2000}}?[“”]"
        rf"|«(?:[^«»\r\n]|{_NOT_BLANK_LINE}){{1,2000}}?»"
        r"|\"(?<![\w\"]\")(?=[^\s\"])[^\"\r\n]{0,1000}?(?<=[^\s\"])\"(?![\w\"])"
        r"|‘(?<![\w‘’]‘)(?=\S)(?:[^‘’\r\n]|’(?=\w)){0,1000}?(?<=\S)’(?!\w)"
        # Straight single quotes: never glued to letters (apostrophes); several words (checked after match).
        r"|'(?<![\w']')(?=[^\s'])(?:[^'\r\n]|(?<=\w)'(?=\w)){2,400}?(?<=[^\s'])'(?![\w'])",
    ),
)
_WWW = re.compile(r"[Ww][Ww][Ww]\.")
# What every match of a pattern contains: a text without it is not searched with that pattern at all.
_TRIGGERS: tuple[Callable[[str], bool], ...] = (
    lambda t: "⟦" in t or "⟧" in t,
    lambda t: "```" in t or "~~~" in t,
    lambda t: "`" in t,
    lambda t: "$" in t or "\\" in t,
    lambda t: "://" in t or _WWW.search(t) is not None,
    lambda t: "@" in t,
    lambda t: "[" in t or "(" in t,
    lambda t: any(mark in t for mark in "\"'“„«‘"),
)
_COMPILED = tuple(
    (kind, re.compile(pattern), trigger) for (kind, pattern), trigger in zip(_PATTERNS, _TRIGGERS, strict=True)
)

_URL_TRAILING = ".,;:!?'\"*_~’”»>…。、，．：；！？）」』】"
_OPENER = {")": "(", "]": "[", "}": "{"}
_URL_PREFIX = re.compile(r"(?:[Hh][Tt][Tt][Pp][Ss]?|[Ff][Tt][Pp])://|[Ww][Ww][Ww]\.")


def trim_url(url: str) -> str:
    """A URL match without what follows the URL itself.

    Cut at the first closing bracket that has no opening one before it (``x.org/a](x.org/b)`` and
    ``(see x.org/a)``), then drop trailing punctuation (what is left has no unbalanced bracket).
    """
    depth = dict.fromkeys(_OPENER.values(), 0)
    for i, ch in enumerate(url):
        if ch in depth:
            depth[ch] += 1
        elif ch in _OPENER:
            opener = _OPENER[ch]
            if not depth[opener]:
                url = url[:i]
                break
            depth[opener] -= 1
    return url.rstrip(_URL_TRAILING)


def find_spans(text: str) -> list[Span]:
    """The non-overlapping protected spans of ``text``, in order: what masking swaps for placeholders.

    The leftmost match of any kind's pattern, the first kind in :data:`KINDS` order on a tie (what one
    alternation of all patterns finds, at a fraction of its cost: each kind is searched for only where
    its last match was passed, and not at all in a text without its trigger characters).
    """
    searches = [(kind, pattern) for kind, pattern, trigger in _COMPILED if trigger(text)]
    upcoming: list[re.Match[str] | None] = [pattern.search(text) for _, pattern in searches]
    spans: list[Span] = []
    pos = 0
    while True:
        m: re.Match[str] | None = None
        kind: SpanKind = "marker"
        for i, (k, pattern) in enumerate(searches):
            candidate = upcoming[i]
            if candidate is not None and candidate.start() < pos:
                candidate = upcoming[i] = pattern.search(text, pos)
            if candidate is not None and (m is None or candidate.start() < m.start()):
                m, kind = candidate, k
        if m is None:
            return spans
        start, end = m.span()
        if kind == "quote":
            body = text[start + 1 : end - 1]
            if text[start] == "'" and not any(c.isspace() for c in body):
                pos = start + 1  # a single quoted word may be an apostrophe pair: leave it alone
                continue
            if not any(c.isalnum() for c in body):
                pos = start + 1  # "..." or “—”: nothing to keep, and its closing mark may open a quotation
                continue
        elif kind == "url":
            url = trim_url(m.group())
            prefix = _URL_PREFIX.match(url)
            if prefix is None or prefix.end() == len(url):  # nothing after "https://" or "www."
                pos = m.end()
                continue
            end = start + len(url)
        spans.append(Span(start, end, kind))
        pos = end


def fact_spans(text: str, spans: list[Span] | None = None) -> list[Span]:
    """The URL, e-mail and quotation spans of ``text`` at any depth, ordered by start.

    Those of ``spans`` (default: ``find_spans(text)``) and those found inside any of its spans other than
    URLs and e-mails (between the span's first and last character), recursively. Every one lies inside a
    span that masking protects.
    """
    out: list[Span] = []
    _collect(text, 0, find_spans(text) if spans is None else spans, out)
    out.sort()
    return out


def _collect(text: str, offset: int, spans: list[Span], out: list[Span]) -> None:
    for span in spans:
        if span.kind in FACT_KINDS:
            out.append(Span(span.start + offset, span.end + offset, span.kind))
        if span.kind not in _ATOMIC and span.end - span.start > 2:
            inner = text[span.start + 1 : span.end - 1]
            _collect(inner, offset + span.start + 1, find_spans(inner), out)
