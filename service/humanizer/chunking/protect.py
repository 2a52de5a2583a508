"""Protected spans: text the model must reproduce verbatim is swapped for placeholders before rewriting.

Placeholders look like ``⟦P1⟧``, ``⟦P2⟧``, ... (U+27E6 / U+27E7 mathematical white square brackets): rare in
real text, a handful of tokens, and models reliably copy them. Numbering starts at 1 per call of
:func:`mask`.

Escaping: any ``⟦`` or ``⟧`` already present in the input (including text that looks like a placeholder) is
itself masked as a span of kind ``"marker"``, so in masked text every bracket belongs to a placeholder we
made and :func:`unmask` is unambiguous. ``unmask(mask(t).text, mask(t).spans) == t`` for every string.

What is protected is decided by :func:`humanizer.spans.find_spans`, the detector verification takes its
URL, e-mail and quotation facts from: marker, code (also fenced blocks inside a chunk, with
``passthrough_structures=False``), math, URL, e-mail, citation, quotation, leftmost-first (an enclosing
quotation protects a URL inside it as part of itself).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from humanizer.spans import MARKER_PATTERN, SpanKind, find_spans

OPEN, CLOSE = "⟦", "⟧"
_PLACEHOLDER = re.compile(r"⟦P([1-9][0-9]{0,8})⟧")
# Anything bracket-like in model output: a well-formed placeholder, a mangled one, or a stray bracket.
_BRACKETISH = re.compile(MARKER_PATTERN)


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


def mask(text: str) -> Masked:
    """Replace protected spans with placeholders ``⟦P1⟧``, ``⟦P2⟧``, ..."""
    found = find_spans(text)
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
    if not spans and OPEN not in text and CLOSE not in text:
        return None  # the common case, without a regex scan of the whole reply
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
