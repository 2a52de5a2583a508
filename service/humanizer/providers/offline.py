"""``offline``: a deterministic local rewriter (no model, no network, no key) — and ``echo``.

What it does, line by line, outside code fences and tables:

1. protects the spans masking protects (``humanizer.spans.find_spans`` on the whole text: ⟦P<n>⟧
   placeholders and other brackets, code, math, URLs, e-mail addresses, citations and quotations) by swapping
   them for private-use sentinels;
2. replaces stock "AI" phrasing and stiff wording from a phrase table (``phrases.py``), with choices
   that depend on the style; capitalised words in mid-sentence (names) are never touched;
3. adjusts contractions for the style (casual: "do not" → "don't"; professional/academic: the reverse);
4. varies sentences a little: splits an over-long sentence at "; " or a final ", which" clause, and joins
   two very short sentences with ", and";
5. restores the protected spans.

Numbers, dates, names, links, quotations, placeholders, line breaks and paragraphs come through unchanged.
Every choice comes from a RNG seeded with a hash of (style, line): same input and style, same output.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from typing import Any

from humanizer.chunking.tokens import count_tokens
from humanizer.providers.base import RewriteRequest, RewriteResult
from humanizer.providers.errors import ErrorKind, ProviderError
from humanizer.providers.phrases import ABBREVIATIONS, CONTRACT, EXPAND, FORMAL, JOINABLE_STARTS, PHRASES, Choice
from humanizer.providers.prompts import Style, resolve_style, style_from_prompt
from humanizer.spans import find_spans

OFFLINE_MODEL = "offline-rewriter-v1"

# --------------------------------------------------------------------------------------------------
# protected spans
# --------------------------------------------------------------------------------------------------

_S0, _S1 = "\ue000", "\ue001"  # sentinel brackets (Unicode private use area)
_CAP_NEXT = "\ue002"  # "capitalise the next word" marker left where a sentence opener was dropped
_SENTINEL = re.compile(_S0 + r"(\d+)" + _S1)


def _protect(text: str) -> tuple[str, list[str]]:
    """``text`` with each protected span swapped for ``<S0>n<S1>``, and the spans' texts (n is the index)."""
    parts: list[str] = []
    spans: list[str] = []
    prev = 0
    for span in find_spans(text):
        parts += (text[prev : span.start], f"{_S0}{len(spans)}{_S1}")
        spans.append(span.text(text))
        prev = span.end
    if not spans:
        return text, spans
    parts.append(text[prev:])
    return "".join(parts), spans


def _restore(line: str, spans: list[str]) -> str:
    return _SENTINEL.sub(lambda m: spans[int(m.group(1))], line)


# --------------------------------------------------------------------------------------------------
# phrase table
# --------------------------------------------------------------------------------------------------


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower().replace("’", "'"))


def _atoms(key: str) -> list[str]:
    """A table key as regex atoms: words joined by ``\\s+``, ' matching ’ too, word boundaries at the ends."""
    words = key.strip().split(" ")
    atoms = [r"\b"] if key[0].isalnum() else []
    for n, word in enumerate(words):
        if n:
            atoms.append(r"\s+")
        atoms.extend("['’]" if c == "'" else re.escape(c) for c in word)
    if key.endswith(" "):
        atoms.append(r"\s+")
    elif key[-1].isalnum():
        atoms.append(r"\b")
    return atoms


def _trie_pattern(sequences: list[list[str]]) -> str:
    """One pattern matching exactly what the alternation of ``sequences`` matches, shaped as a prefix tree:
    ``re`` tries alternatives one by one, so a flat alternation of 200 phrases costs 200 attempts at every
    position, the tree a handful."""
    root: dict[str, Any] = {}
    for seq in sequences:
        node = root
        for atom in seq:
            node = node.setdefault(atom, {})
        node[""] = {}  # a key ends here

    def emit(node: dict[str, Any]) -> str:
        alts = [atom + emit(child) for atom, child in node.items() if atom] + ([""] if "" in node else [])
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root)


class _Table:
    """A phrase table's matcher with ``re.sub`` semantics and the longest key first at each position.

    ``find`` (the prefix tree) locates the next position where some key matches; ``exact`` (the
    longest-first alternation) then picks the key there, so results are those of ``exact.sub`` alone at a
    tenth of the cost."""

    def __init__(self, keys: list[str], suffix: str = "") -> None:
        ordered = sorted(keys, key=len, reverse=True)
        self.exact = re.compile("(?:" + "|".join("".join(_atoms(k)) for k in ordered) + ")" + suffix, re.IGNORECASE)
        self.find = re.compile(_trie_pattern([_atoms(k) for k in keys]) + suffix, re.IGNORECASE)

    def sub(self, repl: Callable[[re.Match[str]], str], line: str) -> str:
        out: list[str] = []
        pos = 0
        while (hit := self.find.search(line, pos)) is not None:
            m = self.exact.match(line, hit.start())
            assert m is not None  # both patterns match the same strings
            out += (line[pos : m.start()], repl(m))
            pos = m.end()
        if not out:
            return line
        out.append(line[pos:])
        return "".join(out)


_PHRASES = _Table(list(PHRASES))
_CONTRACTIONS = _Table(list(CONTRACT), suffix=r"(?=\s+[A-Za-z])")
_EXPANSIONS = _Table(list(EXPAND))
_NEXT_CAPITALISED = re.compile(r"[ \t]+[A-Z][\w-]*")
_LIST_PREFIX = re.compile(r"^\s*(?:[-*+>]|\d{1,3}[.)]|#{1,6})?\s*$")


def _at_sentence_start(s: str, pos: int) -> bool:
    before = s[:pos].rstrip(" \t\"'“‘(")
    if not before or before.endswith(_CAP_NEXT):
        return True
    if before[-1] in ".!?":
        word = re.findall(r"[\w.]+$", before[:-1])
        return not (word and word[0].lower() in ABBREVIATIONS)
    return bool(_LIST_PREFIX.match(before))


def _pick(choice: Choice, rng: random.Random) -> str | None:
    if isinstance(choice, tuple):
        return choice[rng.randrange(len(choice))]
    return choice


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _apply_phrases(line: str, style: Style, rng: random.Random) -> str:
    def repl(m: re.Match[str]) -> str:
        original = m.group(0)
        entry = PHRASES.get(_norm(original))
        if entry is None:
            return original
        start = _at_sentence_start(line, m.start())
        upper = original[:1].isupper()
        if upper and not start:
            return original  # a capitalised word mid-sentence: a name or a title, leave it
        shouting = len(original) > 1 and original.isupper()
        if upper and original[-1].isalnum() and (_NEXT_CAPITALISED.match(line, m.end()) or shouting):
            return original  # "Leverage Capital", "ROBUST": a name, even at the start of a sentence
        if original.rstrip().endswith(",") and not start:
            return original  # sentence connectors only where a sentence starts
        choice = entry.get(style.value, entry.get("*")) if isinstance(entry, dict) else entry
        replacement = _pick(choice, rng)
        if replacement is None:
            return original
        if replacement == "":
            return _CAP_NEXT if upper else ""
        return _capitalise(replacement) if upper else replacement[:1].lower() + replacement[1:]

    out = _PHRASES.sub(repl, line)
    if _CAP_NEXT in out:
        out = re.sub(_CAP_NEXT + r"(\s*)([a-z]+)\b", lambda m: m.group(1) + _capitalise(m.group(2)), out)
        out = out.replace(_CAP_NEXT, "")
    return out


def _apply_contractions(line: str, style: Style) -> str:
    if style is Style.CASUAL:
        table, matcher = CONTRACT, _CONTRACTIONS
    elif style.value in FORMAL:
        table, matcher = EXPAND, _EXPANSIONS
    else:
        return line

    def repl(m: re.Match[str]) -> str:
        original = m.group(0)
        key = _norm(original)
        if key not in table:
            return original
        if style is not Style.CASUAL and key.endswith("'s"):
            rest = line[m.end() : m.end() + 12].lstrip().lower()
            if rest.startswith(("been", "got", "had")):
                return original  # "it's been" = "it has been"
        replacement = table[key]
        if original[:1].isupper() and not replacement.startswith("I"):
            return _capitalise(replacement)
        return replacement

    return matcher.sub(repl, line)


# --------------------------------------------------------------------------------------------------
# sentences
# --------------------------------------------------------------------------------------------------

_BOUNDARY = re.compile(r"[.!?][\"”’')\]]*\s+")


def _sentences(line: str) -> list[str]:
    """Split a line into sentences; each piece keeps its trailing whitespace, so ''.join() is the line."""
    pieces: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(line):
        nxt = line[m.end() : m.end() + 1]
        if not nxt or not (nxt.isupper() or nxt.isdigit() or nxt in (_S0, "(", "⟦")):
            continue
        word = re.findall(r"[\w.]+$", line[start : m.start()])
        if word and (word[0].lower() in ABBREVIATIONS or len(word[0]) == 1):
            continue
        pieces.append(line[start : m.end()])
        start = m.end()
    pieces.append(line[start:])
    return [p for p in pieces if p]


def _words(s: str) -> int:
    return len(s.split())


def _lower_first_word(s: str) -> str | None:
    m = re.match(r"([A-Z][a-z]*)\b", s)
    if not m or m.group(1).lower() not in JOINABLE_STARTS:
        return None
    return m.group(1).lower() + s[m.end() :]


def _split_long(sentence: str, rng: random.Random) -> str:
    core = sentence.rstrip()
    trail = sentence[len(core) :]
    if _words(core) < 20:
        return sentence
    if "; " in core:
        head, _, tail = core.partition("; ")
        if _words(head) >= 5 and _words(tail) >= 4 and tail[:1].islower():
            return f"{head}. {_capitalise(tail)}{trail}"
    idx = core.rfind(", which ")
    if idx > 0:
        head, tail = core[:idx], core[idx + len(", which ") :]
        if _words(head) >= 8 and _words(tail) >= 4 and "," not in tail and core[-1:] in ".!":
            pronoun = ("This", "That")[rng.randrange(2)]
            return f"{head}. {pronoun} {tail}{trail}"
    return sentence


def _vary_sentences(line: str, style: Style, rng: random.Random) -> str:
    pieces = [_split_long(p, rng) for p in _sentences(line)]
    out: list[str] = []
    i = 0
    while i < len(pieces):
        cur = pieces[i]
        if i + 1 < len(pieces):
            nxt = pieces[i + 1]
            a, b = cur.rstrip(), nxt.rstrip()
            if (
                a.endswith(".")
                and not a.endswith("..")
                and 2 <= _words(a) <= 6
                and 2 <= _words(b) <= 6
                and b[-1:] in ".!"
                and rng.random() < (0.75 if style is Style.CASUAL else 0.5)
            ):
                lowered = _lower_first_word(b)
                if lowered is not None:
                    out.append(f"{a[:-1]}, and {lowered}{nxt[len(b):]}")
                    i += 2
                    continue
        out.append(cur)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# the rewriter
# --------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_SKIP_LINE = re.compile(r"^\s*(\||    |\t)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


def _rng(style: Style, line: str) -> random.Random:
    digest = hashlib.sha256(f"{style.value}\x00{line}".encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _rewrite_line(masked: str, style: Style, spans: list[str]) -> str:
    """One line with its protected spans already swapped for sentinels (a span may hold line breaks)."""
    if not masked.strip():
        return masked
    rng = _rng(style, _restore(masked, spans) if spans else masked)  # seeded by the line as written
    out = _apply_phrases(masked, style, rng)
    out = _apply_contractions(out, style)
    if not _HEADING.match(out):
        out = _vary_sentences(out, style, rng)
    return out


def rewrite_text(text: str, style: Style | str = Style.NEUTRAL, custom_prompt: str | None = None) -> str:
    """The offline rewrite of ``text`` (deterministic; keeps line and paragraph structure exactly)."""
    s = style_from_prompt(custom_prompt) if custom_prompt else resolve_style(style)
    masked, spans = _protect(text)
    lines = masked.splitlines(keepends=True)
    out: list[str] = []
    in_fence = False
    for raw in lines:
        body = raw.rstrip("\r\n")
        ending = raw[len(body) :]
        if _FENCE.match(body):
            in_fence = not in_fence
            out.append(raw)
            continue
        if in_fence or _SKIP_LINE.match(body):
            out.append(raw)
            continue
        out.append(_rewrite_line(body, s, spans) + ending)
    return _restore("".join(out), spans)


class _LocalProvider:
    """Providers that compute in-process: the async path is the sync one (no I/O to wait on)."""

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        raise NotImplementedError

    async def arewrite(self, request: RewriteRequest) -> RewriteResult:
        return self.rewrite(request)


class OfflineProvider(_LocalProvider):
    """Phrase-level rewriting on this machine; no language model is involved."""

    name = "offline"
    model = OFFLINE_MODEL

    def __init__(self, **_: object) -> None:
        pass

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        try:
            text = rewrite_text(request.text, request.style, request.custom_prompt)
        except ValueError as exc:
            raise ProviderError(ErrorKind.BAD_REQUEST, str(exc)) from None
        return RewriteResult(
            text=text,
            input_tokens=count_tokens(request.text),
            output_tokens=count_tokens(text),
            model=self.model,
            provider=self.name,
            finish_reason="stop",
        )


class EchoProvider(_LocalProvider):
    """Returns the text unchanged (round-trip tests)."""

    name = "echo"
    model = "identity"

    def __init__(self, **_: object) -> None:
        pass

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        tokens = count_tokens(request.text)
        return RewriteResult(request.text, tokens, tokens, self.model, self.name, "stop")

