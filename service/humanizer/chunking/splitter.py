"""Splitting a document into chunks and putting it back together.

Pipeline: :func:`~humanizer.chunking.blocks.parse_blocks` finds paragraphs and structures; paragraphs are
counted once and packed greedily into prose chunks up to ``max_tokens``. A paragraph over budget gets chunks
of its own, cut at sentence boundaries; a sentence over budget is cut between words (preferring clause
breaks); a word over budget is cut between characters (never before a combining mark if avoidable).
Every multi-unit chunk is re-counted exactly, so each prose chunk provably respects the budget, while the
total counting work stays roughly linear in the document size.

Chunks only reference spans of the original text and the whitespace between them, so
``reassemble(chunks, [c.text for c in chunks])`` reproduces the input byte for byte.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from humanizer.chunking.blocks import Block, parse_blocks
from humanizer.chunking.models import Chunk, ChunkingOptions, ChunkKind, StructureKind
from humanizer.chunking.sentences import sentence_spans
from humanizer.chunking.tokens import count_tokens

_WORD = re.compile(r"\S+")
_CLAUSE_END = frozenset(",;:—–)")

Unit = tuple[int, int, int]
"""(start, end, tokens) of an indivisible piece of prose."""


@dataclass(slots=True)
class _Span:
    start: int
    end: int
    kind: ChunkKind
    tokens: int | None = None
    structure: StructureKind | None = None
    oversized: bool = False


class _Density:
    """Running characters-per-token estimate, used to guess where a budget-sized cut falls."""

    __slots__ = ("ratio",)

    def __init__(self) -> None:
        self.ratio = 4.0

    def update(self, chars: int, tokens: int) -> None:
        if chars > 0 and tokens > 0:
            self.ratio = chars / tokens


def _fit(
    text: str, start: int, ends: Sequence[int], first: int, budget: int, density: _Density
) -> tuple[int, int] | None:
    """Largest-ish ``i >= first`` with ``count_tokens(text[start:ends[i]]) <= budget``.

    ``ends`` is ascending. Returns ``(i, tokens)`` or None when even ``ends[first]`` is over budget.
    Uses a density-guided secant search (a few counts per chunk) with a bisection fallback; it settles for
    a cut once the piece uses at least 80 % of the budget.
    """
    n = len(ends)
    good, good_tokens, bad = first - 1, 0, n
    target = budget * 0.9
    i = bisect_right(ends, start + int(density.ratio * target), first, n) - 1
    i = max(i, first)
    steps = 0
    while True:
        tokens = count_tokens(text[start : ends[i]])
        density.update(ends[i] - start, tokens)
        if tokens <= budget:
            good, good_tokens = i, tokens
            if i == n - 1 or tokens >= 0.8 * budget:
                break
        else:
            bad = i
        if bad - good <= 1:
            break
        steps += 1
        guess = bisect_right(ends, start + int((ends[i] - start) * target / max(tokens, 1)), first, n) - 1
        if steps > 4 or not good < guess < bad:
            guess = (good + bad) // 2  # strictly between, since bad - good >= 2
        i = guess
    if good < first:
        return None
    return good, good_tokens


def _is_glue(text: str, pos: int) -> bool:
    """Whether cutting before ``text[pos]`` would split a grapheme cluster (roughly)."""
    ch = text[pos]
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch in "\u200d\ufe0e\ufe0f"
        or text[pos - 1] == "\u200d"
        or 0x1F3FB <= ord(ch) <= 0x1F3FF
    )


def _hard_split(text: str, start: int, end: int, budget: int, density: _Density) -> list[Unit]:
    """Cut a whitespace-free run into pieces that each fit the budget (last resort)."""
    units: list[Unit] = []
    pos = start
    while pos < end:
        ends = range(pos + 1, end + 1)
        found = _fit(text, pos, ends, 0, budget, density)
        if found is None:  # cannot happen with budget >= 16, but never loop forever
            cut, tokens = pos + 1, count_tokens(text[pos : pos + 1])
        else:
            cut, tokens = ends[found[0]], found[1]
        if cut < end and _is_glue(text, cut):
            back = cut - 1
            while back > pos + 1 and _is_glue(text, back):
                back -= 1
            if back > pos and not _is_glue(text, back):
                cut = back
                tokens = count_tokens(text[pos:cut])
        units.append((pos, cut, tokens))
        pos = cut
    return units


def _word_split(text: str, start: int, end: int, budget: int, density: _Density) -> list[Unit]:
    """Cut an over-budget sentence between words; words over budget are hard split."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
    word_ends = [e for _, e in words]
    units: list[Unit] = []
    i = 0
    while i < len(words):
        ws = words[i][0]
        found = _fit(text, ws, word_ends, i, budget, density)
        if found is None:
            units.extend(_hard_split(text, ws, words[i][1], budget, density))
            i += 1
            continue
        k, tokens = found
        if k < len(words) - 1 and k > i:
            # Prefer ending at a clause break (",", ";", line break ...) within the last quarter.
            floor = max(i, k - (k - i + 1) // 4)
            for j in range(k, floor - 1, -1):
                we = words[j][1]
                gap = text[we : words[j + 1][0]]
                if text[we - 1] in _CLAUSE_END or "\n" in gap or "\r" in gap:
                    if j != k:
                        k, tokens = j, count_tokens(text[ws:we])
                    break
        units.append((ws, words[k][1], tokens))
        i = k + 1
    return units


def _paragraph_units(text: str, start: int, end: int, budget: int, density: _Density) -> list[Unit]:
    """Units (sentences, word groups, hard pieces) of an over-budget paragraph."""
    units: list[Unit] = []
    for s, e in sentence_spans(text, start, end):
        tokens = count_tokens(text[s:e])
        if tokens <= budget:
            units.append((s, e, tokens))
        else:
            units.extend(_word_split(text, s, e, budget, density))
    return units


def _gap_cost(text: str, a: int, b: int) -> int:
    return 1 if b - a <= 2 else count_tokens(text[a:b]) + 1


def _pack(text: str, units: list[Unit], budget: int) -> list[Unit]:
    """Greedily group consecutive units into spans of at most ``budget`` tokens (verified exactly)."""
    groups: list[Unit] = []
    i, n = 0, len(units)
    while i < n:
        j, estimate = i, units[i][2]
        while j + 1 < n:
            step = units[j + 1][2] + _gap_cost(text, units[j][1], units[j + 1][0])
            if estimate + step > budget:
                break
            estimate += step
            j += 1
        tokens = units[i][2]
        if j > i:
            tokens = count_tokens(text[units[i][0] : units[j][1]])
            if tokens > budget:  # rare: the estimate was optimistic; bisect on the real count
                lo, lo_tokens, hi = i, units[i][2], j
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    t = count_tokens(text[units[i][0] : units[mid][1]])
                    if t <= budget:
                        lo, lo_tokens = mid, t
                    else:
                        hi = mid
                j, tokens = lo, lo_tokens
        groups.append((units[i][0], units[j][1], tokens))
        i = j + 1
    return groups


_STRUCTURE_OF_BLOCK: dict[str, StructureKind] = {
    "code": "code",
    "table": "table",
    "list": "list",
    "heading": "heading",
    "html": "html",
    "hr": "hr",
    "frontmatter": "frontmatter",
}


def _plan(text: str, blocks: list[Block], options: ChunkingOptions) -> list[_Span]:
    budget = options.max_tokens
    density = _Density()
    spans: list[_Span] = []
    pending: list[Unit] = []

    def flush() -> None:
        for s, e, t in _pack(text, pending, budget):
            spans.append(_Span(s, e, "prose", t))
        pending.clear()

    for block in blocks:
        if block.kind != "paragraph":
            structure = _STRUCTURE_OF_BLOCK[block.kind]
            if options.passthrough_structures:
                flush()
                spans.append(_Span(block.start, block.end, "passthrough", structure=structure))
                continue
            tokens = count_tokens(text[block.start : block.end])
            if tokens <= budget:
                pending.append((block.start, block.end, tokens))
            else:
                flush()
                spans.append(_Span(block.start, block.end, "prose", tokens, structure, oversized=True))
            continue
        tokens = count_tokens(text[block.start : block.end])
        if tokens <= budget:
            pending.append((block.start, block.end, tokens))
            continue
        flush()
        pending.extend(_paragraph_units(text, block.start, block.end, budget, density))
        flush()
    flush()
    return spans


def _tail(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    piece = text[-n:]
    if not text[-n - 1].isspace() and not piece[0].isspace():  # drop the cut-off first word
        parts = piece.split(None, 1)
        if len(parts) == 2:
            piece = parts[1]
    return piece.strip()


def _head(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    piece = text[:n]
    if not text[n].isspace() and not piece[-1].isspace():  # drop the cut-off last word
        parts = piece.rsplit(None, 1)
        if len(parts) == 2:
            piece = parts[0]
    return piece.strip()


def split_document(text: str, options: ChunkingOptions | None = None) -> list[Chunk]:
    """Split ``text`` into chunks (see the module docstring).

    The empty string gives ``[]``. A whitespace-only document gives one passthrough chunk (structure
    ``"whitespace"``) whose text is the whole document. Otherwise every chunk has non-whitespace text.
    """
    options = options or ChunkingOptions()
    if not text:
        return []
    if not text.strip():
        return [
            Chunk(
                index=0,
                kind="passthrough",
                text=text,
                tokens=count_tokens(text),
                start=0,
                structure="whitespace",
            )
        ]
    spans = _plan(text, parse_blocks(text), options)
    for span in spans:
        if span.kind == "prose":  # prose text never carries surrounding whitespace
            piece = text[span.start : span.end]
            stripped = piece.strip()
            if len(stripped) != len(piece):
                span.start += len(piece) - len(piece.lstrip())
                span.end = span.start + len(stripped)
                span.tokens = None
        if span.tokens is None:
            span.tokens = count_tokens(text[span.start : span.end])

    n = len(spans)
    before: list[str | None] = [None] * n
    after: list[str | None] = [None] * n
    if options.context_chars > 0:
        width = options.context_chars
        last: str | None = None
        for i, span in enumerate(spans):
            if span.kind == "prose":
                before[i] = last
                last = _tail(text[span.start : span.end], width)
        nxt: str | None = None
        for i in range(n - 1, -1, -1):
            span = spans[i]
            if span.kind == "prose":
                after[i] = nxt
                nxt = _head(text[span.start : span.end], width)

    chunks: list[Chunk] = []
    prev_end = 0
    for i, span in enumerate(spans):
        assert span.tokens is not None
        chunks.append(
            Chunk(
                index=i,
                kind=span.kind,
                text=text[span.start : span.end],
                prefix=text[prev_end : span.start],
                suffix=text[span.end :] if i == n - 1 else "",
                tokens=span.tokens,
                start=span.start,
                structure=span.structure,
                oversized=span.oversized,
                context_before=before[i] or None,
                context_after=after[i] or None,
            )
        )
        prev_end = span.end
    return chunks


def reassemble(
    chunks: Sequence[Chunk],
    outputs: Sequence[str | None] | Mapping[int, str],
    *,
    strip_outputs: bool = False,
) -> str:
    """Rebuild the document with each prose chunk's text replaced by its output.

    ``outputs`` is either a sequence aligned with ``chunks`` or a mapping ``chunk.index -> output``.
    Passthrough chunks always keep their original text (their output entry is ignored and may be None or
    missing). A ``None`` output for a prose chunk also keeps the original text. A prose chunk missing from a
    mapping raises ``ValueError``. With ``strip_outputs`` surrounding whitespace of outputs is dropped, so
    the original separators are used exactly.
    """
    resolved: list[str | None]
    if isinstance(outputs, Mapping):
        missing = [c.index for c in chunks if c.kind == "prose" and c.index not in outputs]
        if missing:
            raise ValueError(f"no output for prose chunk(s) {missing[:20]}")
        resolved = [outputs.get(c.index) for c in chunks]
    else:
        if len(outputs) != len(chunks):
            raise ValueError(f"{len(outputs)} outputs for {len(chunks)} chunks")
        resolved = list(outputs)

    parts: list[str] = []
    for position, chunk in enumerate(chunks):
        if chunk.index != position:
            raise ValueError(f"chunk at position {position} has index {chunk.index}; chunks must be in order")
        out = resolved[position] if chunk.kind == "prose" else None
        if out is None:
            out = chunk.text
        elif strip_outputs:
            out = out.strip()
        parts.append(chunk.prefix)
        parts.append(out)
        parts.append(chunk.suffix)
    return "".join(parts)
