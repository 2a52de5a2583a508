"""Protected spans: text the model must reproduce verbatim is swapped for placeholders before rewriting.

Placeholders look like ``⟦P1⟧``, ``⟦P2⟧``, ... (U+27E6 / U+27E7 mathematical white square brackets): rare in
real text, a handful of tokens, and models reliably copy them. Numbering starts at 1 per call of
:func:`mask`.

Escaping: any ``⟦`` or ``⟧`` already present in the input (including text that looks like a placeholder) is
itself masked as a span of kind ``"marker"``, so in masked text every bracket belongs to a placeholder we
made and :func:`unmask` is unambiguous. ``unmask(mask(t).text, mask(t).spans) == t`` for every string.

Fenced code blocks inside a chunk (``passthrough_structures=False``) are protected as ``code`` too.
Protected kinds, in priority order where two could start at the same position: marker, inline code,
math, URL, e-mail, citation, quotation. Overlaps resolve leftmost-first (an enclosing quotation protects a
URL inside it as part of itself).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

SpanKind = Literal["marker", "code", "math", "url", "email", "citation", "quote"]

OPEN, CLOSE = "⟦", "⟧"
_PLACEHOLDER = re.compile(r"⟦P([1-9][0-9]{0,8})⟧")
# Anything bracket-like in model output: a well-formed placeholder, a mangled one, or a stray bracket.
_BRACKETISH = re.compile(r"⟦[^⟦⟧\r\n]{0,40}⟧|[⟦⟧]")


class ProtectedSpan(BaseModel):
    """One masked span: ``placeholder`` stands for ``original`` in the masked text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    placeholder: str
    original: str
    kind: SpanKind


class Masked(BaseModel):
    """Result of :func:`mask`: the text to send to the model and the spans to restore afterwards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    spans: tuple[ProtectedSpan, ...] = ()

    def unmask(self, rewritten: str) -> str:
        """Shorthand for ``unmask(rewritten, self.spans)``."""
        return unmask(rewritten, self.spans)


class PlaceholderError(ValueError):
    """The rewritten text lost, duplicated, altered or invented placeholders.

    The message and attributes name placeholder ids only, never document text.
    """

    def __init__(
        self,
        *,
        missing: Sequence[str] = (),
        duplicated: Sequence[str] = (),
        unknown: Sequence[str] = (),
        malformed: int = 0,
    ) -> None:
        self.missing = tuple(missing)
        self.duplicated = tuple(duplicated)
        self.unknown = tuple(unknown)
        self.malformed = malformed
        problems = []
        if self.missing:
            problems.append("missing " + _id_list(self.missing))
        if self.duplicated:
            problems.append("duplicated " + _id_list(self.duplicated))
        if self.unknown:
            problems.append("unknown " + _id_list(self.unknown))
        if self.malformed:
            problems.append(f"{self.malformed} malformed placeholder marker(s)")
        super().__init__("placeholder check failed: " + "; ".join(problems))


def _id_list(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


# --- span detection ---------------------------------------------------------------------------------------

_NOT_BLANK_LINE = r"(?:\r\n|\r|\n)(?![ \t]*(?:\r\n|\r|\n))"  # a line break that does not start a blank line
_NAME = r"[A-Z\u00c0-\u00de][\w'’\-]+"
_AUTHORS = rf"{_NAME}(?:(?:,[ \t]*|[ \t]+)(?:and[ \t]+|&[ \t]*)?{_NAME})*(?:[ \t]+et[ \t]+al\.?)?"
_CITE_ONE = rf"{_AUTHORS},?[ \t]+(?:\d{{4}}[a-z]?|n\.d\.)(?:,[ \t]*(?:pp?\.|p\.)[ \t]*\d+(?:[-–]\d+)?)?"

_PATTERNS: tuple[tuple[SpanKind, str], ...] = (
    ("marker", r"⟦[^⟦⟧\r\n]{0,40}⟧|[⟦⟧]"),
    (
        "code",
        # A whole fenced block (when chunks keep structures as prose), then inline code.
        r"(?m:^[ \t]*(?P<fence>`{3,}|~{3,})[^\r\n]*(?:\r\n|\r|\n)"
        r"[\s\S]*?^[ \t]*(?P=fence)[ \t]*(?=[\r\n]|\Z))"
        r"|(?P<bt>`{1,3})(?!`)[^\r\n]*?[^`\r\n](?P=bt)(?!`)",
    ),
    (
        "math",
        r"(?<![\\$])\$\$(?:[^$]|\$(?!\$)){1,5000}?\$\$"
        r"|\\\[[\s\S]{1,5000}?\\\]"
        r"|\\\([^\r\n]{1,1000}?\\\)"
        r"|(?<![\\$\w])\$(?![\s$])(?:[^$\r\n\\]|\\.){1,500}?(?<![\s\\])\$(?![\d$\w])",
    ),
    ("url", r"(?:\b[Hh][Tt][Tt][Pp][Ss]?://|(?<![\w.@/])[Ww][Ww][Ww]\.)[^\s<>\"`⟦⟧]+"),
    (
        "email",
        r"(?<![\w.%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w\-])",
    ),
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
        r"|(?<![\w\"])\"(?=[^\s\"])[^\"\r\n]{0,1000}?(?<=[^\s\"])\"(?![\w\"])"
        r"|(?<![\w‘’])‘(?=\S)(?:[^‘’\r\n]|’(?=\w)){0,1000}?(?<=\S)’(?!\w)"
        # Straight single quotes: never glued to letters (apostrophes); several words (checked after match).
        r"|(?<![\w'])'(?=[^\s'])(?:[^'\r\n]|(?<=\w)'(?=\w)){2,400}?(?<=[^\s'])'(?![\w'])",
    ),
)
_DETECT = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _PATTERNS))
_KIND_OF_GROUP: dict[str, SpanKind] = {kind: kind for kind, _ in _PATTERNS} | {"bt": "code", "fence": "code"}
_URL_TRAILING = ".,;:!?'\"*_~’”»>"


_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _trim_url(url: str) -> str:
    """Drop trailing punctuation and unbalanced closing brackets from a URL match."""
    while url:
        last = url[-1]
        opener = _CLOSERS.get(last)
        unbalanced = opener is not None and url.count(opener) < url.count(last)
        if last not in _URL_TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def protected_spans(text: str) -> list[tuple[int, int, SpanKind]]:
    """Non-overlapping ``(start, end, kind)`` spans of ``text`` to protect, in order."""
    spans: list[tuple[int, int, SpanKind]] = []
    pos = 0
    while True:
        m = _DETECT.search(text, pos)
        if m is None:
            return spans
        kind = _KIND_OF_GROUP[m.lastgroup or ""]
        start, end = m.start(), m.end()
        if kind == "quote" and text[start] == "'" and not any(c.isspace() for c in m.group()):
            pos = start + 1  # a single quoted word may be an apostrophe pair: leave it alone
            continue
        if kind == "url":
            url = _trim_url(m.group())
            end = start + len(url)
            if url.lower() in ("http://", "https://", "www.") or end <= start:
                pos = m.end()
                continue
        spans.append((start, end, kind))
        pos = end


def mask(text: str) -> Masked:
    """Replace protected spans with placeholders ``⟦P1⟧``, ``⟦P2⟧``, ..."""
    found = protected_spans(text)
    if not found:
        return Masked(text=text)
    parts: list[str] = []
    spans: list[ProtectedSpan] = []
    prev = 0
    for number, (start, end, kind) in enumerate(found, start=1):
        placeholder = f"{OPEN}P{number}{CLOSE}"
        parts.append(text[prev:start])
        parts.append(placeholder)
        spans.append(ProtectedSpan(placeholder=placeholder, original=text[start:end], kind=kind))
        prev = end
    parts.append(text[prev:])
    return Masked(text="".join(parts), spans=tuple(spans))


def check_placeholders(text: str, spans: Sequence[ProtectedSpan]) -> PlaceholderError | None:
    """The problem with the placeholders in ``text`` (as an exception object), or None if all is well.

    Each span's placeholder must occur exactly once (in any order); no other placeholder-like marker may
    occur.
    """
    expected = {span.placeholder for span in spans}
    seen: Counter[str] = Counter()
    unknown: list[str] = []
    malformed = 0
    for m in _BRACKETISH.finditer(text):
        token = m.group()
        if token in expected:
            seen[token] += 1
        elif _PLACEHOLDER.fullmatch(token):
            unknown.append(token[1:-1])
        else:
            malformed += 1
    order = [span.placeholder for span in spans]
    missing = [p[1:-1] for p in order if seen[p] == 0]
    duplicated = [p[1:-1] for p in order if seen[p] > 1]
    if missing or duplicated or unknown or malformed:
        return PlaceholderError(
            missing=missing, duplicated=duplicated, unknown=sorted(set(unknown)), malformed=malformed
        )
    return None


def unmask(text: str, masked_spans: Sequence[ProtectedSpan]) -> str:
    """Put the original spans back in place of their placeholders.

    Raises :class:`PlaceholderError` if any placeholder is missing, duplicated, altered or invented.
    """
    error = check_placeholders(text, masked_spans)
    if error is not None:
        raise error
    if not masked_spans:
        return text
    originals = {span.placeholder: span.original for span in masked_spans}
    return _PLACEHOLDER.sub(lambda m: originals[m.group()], text)
