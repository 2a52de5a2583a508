"""Heuristic sentence segmentation (English-centric, with CJK full stops).

A boundary is a run of terminal punctuation (``.``, ``!``, ``?``, ``…``), optionally followed by closing
quotes/brackets, then whitespace, then something that does not start with a lowercase letter. A single
period does not end a sentence after a known abbreviation ("Dr.", "vs.", "Fig. 3"), an initial ("J. Smith")
or a dotted acronym ("e.g.", "U.S."). Decimals ("3.5") never qualify because no whitespace follows the dot.
CJK full stops (``。！？``) end a sentence even without following whitespace.
"""

from __future__ import annotations

import itertools
import re

_TERMINATOR = re.compile(r"[.!?…]+[\"'”’»)\]]*|[。！？]+[」』”’）)]*")
_CJK_STOPS = frozenset("。！？")
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
_LEADING_PUNCT = "([{\"'“‘«"

# Never end a sentence after these (lowercased, without the final period).
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "mx",
        "dr",
        "prof",
        "rev",
        "hon",
        "gen",
        "col",
        "capt",
        "cpt",
        "lt",
        "sgt",
        "maj",
        "cmdr",
        "adm",
        "gov",
        "pres",
        "sen",
        "rep",
        "st",
        "sr",
        "jr",
        "mt",
        "ft",
        "vs",
        "cf",
        "al",
        "approx",
        "dept",
        "univ",
        "assn",
        "bros",
        "est",
    ]
)
# Only an abbreviation when a number follows ("No. 5", "Fig. 3", "Jan. 12").
_NUMERIC_ABBREVIATIONS = frozenset(
    [
        "no",
        "nos",
        "vol",
        "vols",
        "fig",
        "figs",
        "p",
        "pp",
        "ch",
        "chap",
        "sec",
        "sect",
        "eq",
        "eqs",
        "art",
        "ref",
        "refs",
        "tab",
        "ex",
        "op",
        "ed",
        "nr",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)


def _is_abbreviation(word: str, following: str) -> bool:
    word = word.lstrip(_LEADING_PUNCT)
    if not word:
        return False
    lowered = word.lower()
    if lowered in _ABBREVIATIONS:
        return True
    if lowered in _NUMERIC_ABBREVIATIONS and following.isdigit():
        return True
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: "J. R. R. Tolkien"
    return bool(_DOTTED.fullmatch(word))


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans ``(s, e)`` covering ``text[start:end]``; each span excludes surrounding whitespace.

    ``text[start:end]`` should itself be stripped. Between consecutive spans there is only whitespace
    (possibly none, after CJK full stops).
    """
    if end is None:
        end = len(text)
    spans: list[tuple[int, int]] = []
    cur = start
    for m in _TERMINATOR.finditer(text, start, end):
        p = m.end()
        if p >= end:
            break
        term = m.group()
        if term[0] not in _CJK_STOPS:
            if not text[p].isspace():
                continue
            q = p
            while q < end and text[q].isspace():
                q += 1
            if q >= end:
                break
            following = text[q]
            if following.islower():
                continue
            if term == ".":
                before = text[max(start, m.start() - 40) : m.start()]
                parts = before.rsplit(None, 1)
                word = parts[-1] if parts and not before[-1:].isspace() else ""
                if _is_abbreviation(word, following):
                    continue
        else:
            q = p
            while q < end and text[q].isspace():
                q += 1
            if q >= end:
                break
        if p > cur:
            spans.append((cur, p))
            cur = q
    if cur < end:
        spans.append((cur, end))
    return spans


_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")


def split_in_two(text: str) -> tuple[str, str, str] | None:
    """Cut ``text`` into ``(left, gap, right)`` with ``left + gap + right == text``, at the paragraph break
    nearest the middle, or else at the sentence boundary nearest the middle; ``gap`` is the whitespace
    there. None when there is no such boundary (a single sentence)."""
    core_start = len(text) - len(text.lstrip())
    core_end = len(text.rstrip())
    if core_end <= core_start:
        return None
    middle = (core_start + core_end) / 2
    cuts = [(m.start(), m.end()) for m in _PARAGRAPH_BREAK.finditer(text, core_start, core_end)]
    if not cuts:
        spans = sentence_spans(text, core_start, core_end)
        cuts = [(a[1], b[0]) for a, b in itertools.pairwise(spans)]
    cuts = [(a, b) for a, b in cuts if core_start < a and b < core_end]
    if not cuts:
        return None
    a, b = min(cuts, key=lambda c: abs((c[0] + c[1]) / 2 - middle))
    return text[:a], text[a:b], text[b:]
