"""Line-based detection of markdown block structures.

A pragmatic subset of CommonMark/GFM block parsing: enough to know where paragraphs are and which regions
must never be split (fenced code, tables, lists, headings, HTML blocks, horizontal rules, YAML front matter).
Lines end at ``\\r\\n``, ``\\r`` or ``\\n``. Indented (4-space) code blocks are deliberately *not* detected:
in plain-text input indented paragraphs are far more common than indented code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BlockKind = Literal["paragraph", "code", "table", "list", "heading", "html", "hr", "frontmatter"]


@dataclass(frozen=True, slots=True)
class Block:
    """A block of the document: ``text[start:end]``.

    Paragraph spans exclude surrounding whitespace; structure spans run from the start of their first line
    to the end of their last line (line ending excluded). Everything between blocks is whitespace.
    """

    kind: BlockKind
    start: int
    end: int


_NEWLINE = re.compile(r"\r\n|\r|\n")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_ATX = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
_HR = re.compile(r" {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)[ \t]*")
_LIST_ITEM = re.compile(r" {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)")
# A list item that may interrupt a paragraph: a bullet or an ordered list starting at 1, with content.
_LIST_INTERRUPT = re.compile(r" {0,3}(?:[-+*]|1[.)])[ \t]+\S")
_TABLE_DELIM = re.compile(r" {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")
_PIPE_ROW = re.compile(r" {0,3}\|.*\|[ \t]*")
_FRONTMATTER_KEY = re.compile(r"[A-Za-z0-9_\"'-][^:]*:(?:\s|$)")

_HTML_BLOCK_TAGS = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|"
    "div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h1|h2|h3|h4|h5|h6|head|header|hr|html|"
    "iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|"
    "summary|table|tbody|td|tfoot|th|thead|title|tr|track|ul"
)
# (start pattern, end marker or None for "until a blank line")
_HTML_WITH_END: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(r" {0,3}<(?:script|pre|style|textarea)(?:[\s>]|$)", re.I),
        re.compile(r"</(?:script|pre|style|textarea)>", re.I),
    ),
    (re.compile(r" {0,3}<!--"), re.compile(r"-->")),
    (re.compile(r" {0,3}<\?"), re.compile(r"\?>")),
    (re.compile(r" {0,3}<![A-Za-z]"), re.compile(r">")),
    (re.compile(r" {0,3}<!\[CDATA\["), re.compile(r"\]\]>")),
)
_HTML_TYPE6 = re.compile(rf" {{0,3}}</?(?:{_HTML_BLOCK_TAGS})(?:[\s>]|/>|$)", re.I)
_HTML_TYPE7 = re.compile(
    r" {0,3}(?:<[A-Za-z][A-Za-z0-9-]*"
    r"(?:\s+[A-Za-z_:][\w.:-]*(?:\s*=\s*(?:[^\s\"'=<>`]+|'[^']*'|\"[^\"]*\"))?)*\s*/?>"
    r"|</[A-Za-z][A-Za-z0-9-]*\s*>)[ \t]*"
)


def _indent(line: str) -> int:
    if not line or line[0] not in " \t":
        return 0
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def _blank(line: str) -> bool:
    return not line.strip()


def _fence(line: str) -> tuple[str, int] | None:
    """(fence character, length) if ``line`` opens a fenced code block."""
    m = _FENCE_OPEN.match(line)
    if m is None:
        return None
    fence = m.group(1)
    if fence[0] == "`" and "`" in m.group(2):
        return None
    return fence[0], len(fence)


def _closes(line: str, char: str, length: int, *, nested: bool) -> bool:
    body = line.strip()
    return len(body) >= length and body == char * len(body) and (nested or _indent(line) <= 3)


class _Parser:
    def __init__(self, text: str) -> None:
        starts = [0]
        ends: list[int] = []
        for m in _NEWLINE.finditer(text):
            ends.append(m.start())
            starts.append(m.end())
        ends.append(len(text))
        self.text = text
        self.starts = starts
        self.ends = ends
        self.lines = [text[s:e] for s, e in zip(starts, ends, strict=True)]
        self.n = len(starts)

    # -- helpers -----------------------------------------------------------------------------------------
    def _last_nonblank(self, upto: int, floor: int) -> int:
        j = upto
        while j > floor and _blank(self.lines[j]):
            j -= 1
        return j

    def _fence_end(self, i: int, char: str, length: int, *, nested: bool = False) -> int:
        for k in range(i + 1, self.n):
            if _closes(self.lines[k], char, length, nested=nested):
                return k
        return self._last_nonblank(self.n - 1, i)  # unterminated: the rest of the document

    def _until_blank(self, i: int) -> int:
        k = i
        while k + 1 < self.n and not _blank(self.lines[k + 1]):
            k += 1
        return k

    def _table_start(self, i: int) -> bool:
        line = self.lines[i]
        if "|" not in line or i + 1 >= self.n:
            return False
        nxt = self.lines[i + 1]
        if _TABLE_DELIM.fullmatch(nxt) and "|" in nxt:
            return True
        return bool(_PIPE_ROW.fullmatch(line) and _PIPE_ROW.fullmatch(nxt))

    def _html_end(self, i: int, *, interrupting: bool) -> int | None:
        line = self.lines[i]
        for start, end in _HTML_WITH_END:
            if start.match(line):
                for k in range(i, self.n):
                    if end.search(self.lines[k]):
                        return k
                return self._last_nonblank(self.n - 1, i)
        if _HTML_TYPE6.match(line) or (not interrupting and _HTML_TYPE7.fullmatch(line)):
            return self._until_blank(i)
        return None

    def _interrupts_paragraph(self, i: int) -> bool:
        line = self.lines[i]
        return bool(
            _fence(line)
            or _ATX.match(line)
            or _HR.fullmatch(line)
            or _LIST_INTERRUPT.match(line)
            or self._html_end(i, interrupting=True) is not None
            or self._table_start(i)
        )

    def _list_end(self, i: int) -> int:
        last = i
        j = i + 1
        while j < self.n:
            line = self.lines[j]
            if _blank(line):
                m = j + 1
                while m < self.n and _blank(self.lines[m]):
                    m += 1
                if m < self.n and (
                    _indent(self.lines[m]) >= 2
                    or (_LIST_ITEM.match(self.lines[m]) and not _HR.fullmatch(self.lines[m]))
                ):
                    j = m
                    continue
                break
            if _indent(line) >= 2:
                fence = _fence(line.lstrip(" \t"))
                if fence is not None:
                    last = self._fence_end(j, *fence, nested=True)
                    j = last + 1
                    continue
                last = j
                j += 1
                continue
            if _HR.fullmatch(line):
                break
            if _LIST_ITEM.match(line):
                last = j
                j += 1
                continue
            if _fence(line) or _ATX.match(line) or self._html_end(j, interrupting=True) is not None:
                break
            if self._table_start(j):
                break
            last = j  # lazy continuation line
            j += 1
        return last

    # -- main loop ---------------------------------------------------------------------------------------
    def _frontmatter_end(self) -> int | None:
        if self.n < 3 or self.lines[0].rstrip() != "---" or not _FRONTMATTER_KEY.match(self.lines[1]):
            return None
        for k in range(1, self.n):
            if self.lines[k].rstrip() in ("---", "..."):
                return k
        return None

    def _block_at(self, i: int) -> tuple[BlockKind, int]:
        line = self.lines[i]
        fence = _fence(line)
        if fence is not None:
            return "code", self._fence_end(i, *fence)
        if _ATX.match(line):
            return "heading", i
        if _HR.fullmatch(line):
            return "hr", i
        html_end = self._html_end(i, interrupting=False)
        if html_end is not None:
            return "html", html_end
        if self._table_start(i):
            k = i + 1
            while k + 1 < self.n and "|" in self.lines[k + 1] and not _blank(self.lines[k + 1]):
                k += 1
            return "table", k
        if _LIST_ITEM.match(line):
            return "list", self._list_end(i)
        k = i
        while k + 1 < self.n:
            nxt = self.lines[k + 1]
            if _blank(nxt):
                break
            if _SETEXT.fullmatch(nxt):
                if nxt.strip()[0] == "=" or k == i:
                    return "heading", k + 1
                break  # a "---" under a multi-line paragraph is a horizontal rule
            if self._interrupts_paragraph(k + 1):
                break
            k += 1
        return "paragraph", k

    def parse(self) -> list[Block]:
        blocks: list[Block] = []
        i = 0
        fm = self._frontmatter_end()
        if fm is not None:
            blocks.append(Block("frontmatter", 0, self.ends[fm]))
            i = fm + 1
        while i < self.n:
            line = self.lines[i]
            if _blank(line):
                i += 1
                continue
            kind, last = self._block_at(i)
            if kind == "paragraph":
                first_line, last_line = self.lines[i], self.lines[last]
                start = self.starts[i] + len(first_line) - len(first_line.lstrip())
                end = self.starts[last] + len(last_line.rstrip())
            else:
                start, end = self.starts[i], self.ends[last]
            blocks.append(Block(kind, start, end))
            i = last + 1
        return blocks


def parse_blocks(text: str) -> list[Block]:
    """Blocks of ``text`` in document order; the gaps between them are whitespace only."""
    return _Parser(text).parse()
