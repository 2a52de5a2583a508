"""Extraction of comparable facts from a text.

Facts are normalised so that equivalent spellings compare equal:

- numbers: ``"1,000"`` == ``"1000"``, ``"3.50"`` == ``"3.5"``, ``"50%"`` == ``"50 percent"``,
  ``"$3.2 million"`` == ``"$3,200,000"`` == ``"3.2 million dollars"`` (all ``"$3200000"``), ``"−5"`` ==
  ``"-5"``; both ends of a range (``"10–20%"``) are numbers (``"10%"``, ``"20%"``). Years are numbers.
- dates: ISO-like strings, ``"2024-03-05"`` (full), ``"2024-03"`` (month and year) or ``"--03-05"``
  (month and day); ambiguous numeric dates such as ``03/05/2024`` are kept as ``"3/5/2024"``.
- URLs (scheme and host lower-cased), e-mail addresses (lower-cased) and quoted strings (the text between
  the marks, whitespace collapsed, trailing punctuation dropped): exactly the spans of these kinds that
  masking protects, found by the same detector (:func:`humanizer.spans.fact_spans`: also those inside
  another protected span, such as a URL in a quotation), on the text as written; the values are compared
  in NFKC form with ``’`` read as ``'``.
- capitalised names: runs of capitalised words (``"World Health Organization"``, ``"Ada Lovelace"``,
  ``"University of Oxford"``) and single capitalised words that are not at the start of a sentence.
  A single word at a sentence start is ambiguous ("Researchers found ...") and is not a fact unless it
  is an acronym (it still is one where it also occurs mid-sentence); leading common words ("The",
  "However", ...) are stripped from runs, and a capitalised common word splits a run.

The analysis also keeps what the *presence* tests of :mod:`humanizer.verification.check` need:
word n-grams (a name counts as present anywhere in the rewrite, including at a sentence start),
the whitespace-normalised text (quotes), content-word stems (meaning-drift signal) and extra
evidence such as spelled-out numbers ("five") and the parts of full dates.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, PrivateAttr

from humanizer.spans import fact_spans

CATEGORIES: tuple[str, ...] = ("numbers", "dates", "urls", "emails", "quotes", "names")

MAX_NAME_WORDS = 6

# ---------------------------------------------------------------------------------------------
# Model


class FactLists(BaseModel):
    """One list of normalised values per fact category (the shape of Facts and of report diffs)."""

    numbers: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    quotes: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)


class Facts(FactLists):
    """Normalised facts of a text, one sorted list of distinct values per category."""

    # category -> normalised value -> first surface form seen (for readable messages; not serialised)
    _surface: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    def category(self, name: str) -> list[str]:
        return list(getattr(self, name))

    def surface(self, category: str, value: str) -> str:
        """The text as first written for a normalised ``value`` (the value itself if unknown)."""
        return self._surface.get(category, {}).get(value, value)

    def is_empty(self) -> bool:
        return not any(getattr(self, c) for c in CATEGORIES)


# ---------------------------------------------------------------------------------------------
# Shared vocabulary

MONTHS: dict[str, int] = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
    "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DAYS = _words(
    "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun"
)

# Capitalised words that are not names on their own: function words, pronouns, sentence adverbs,
# auxiliaries, titles and greetings. Compared lower-cased.
STOPWORDS = _words(
    """
    a an the this that these those some any each every all both many most much few several such no
    other another own same either neither
    i me my mine we us our ours you your yours he him his she her hers it its they them their theirs
    one ones someone something anyone anything everyone everything nobody nothing somebody
    and but or nor so yet for in on at by with from to of as if when whenever while although though
    because since after before during until till unless whether where wherever why how what which who
    whom whose than then once over under into onto upon about above below between among amongst
    through throughout across against without within despite like unlike per via along around
    beyond toward towards off out up down near behind beside besides inside outside past
    also however therefore thus hence moreover furthermore meanwhile nevertheless nonetheless still
    instead indeed finally first second third fourth fifth firstly secondly thirdly lastly next
    later now today yesterday tomorrow tonight here there yes not only just even perhaps maybe
    often sometimes usually always never overall additionally similarly likewise consequently
    ultimately importantly notably specifically generally typically recently currently clearly
    certainly surely actually basically essentially interestingly unfortunately fortunately
    frankly honestly obviously naturally sadly luckily hopefully initially eventually previously
    again already almost very quite rather really too well otherwise accordingly alternatively
    is are was were be been being am do does did done have has had having can could will would
    shall should might must let lets please note see consider imagine remember
    mr mrs ms mx dr prof sir madam st jr sr rev gen col capt lt sgt hon
    ok okay hello hi hey dear thanks thank regards cheers welcome sorry etc eg ie vs
    """
)

# Lower-case words allowed inside a multi-word name ("University of Oxford", "Ludwig van Beethoven").
CONNECTORS = _words("of for de del della der den van von la le du da di al bin ibn y")

# Abbreviations after which a full stop does not end a sentence.
ABBREVIATIONS = _words(
    "mr mrs ms mx dr prof sr jr st mt ft no vs etc eg ie al fig gen col capt lt sgt rev hon inc ltd co corp"
    " jan feb mar apr jun jul aug sep sept oct nov dec approx est dept univ"
)

SPELLED_NUMBERS: dict[str, str] = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50",
    "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100",
    "thousand": "1000", "dozen": "12", "half": "50%", "quarter": "25%",
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6",
    "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Regular expressions

_MONTH_ALT = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)"
)
_ORD = r"(?:st|nd|rd|th)?"
_DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # 2024-03-05, 2024/03/05
    re.compile(
        r"(?<![\w.])(?P<y>[12][0-9]{3})([-/.])(?P<m>[0-9]{1,2})\2(?P<d>[0-9]{1,2})(?![0-9A-SU-Za-z_]|[.,][0-9])"
    ),
    # March 5, 2024 / Mar. 5th 2024 / March 5
    re.compile(
        rf"(?<![\w])(?P<mon>{_MONTH_ALT})\.?\s+(?P<d>[0-9]{{1,2}}){_ORD}(?![0-9])"
        rf"(?:,?\s+(?P<y>[12][0-9]{{3}})(?![0-9]))?"
    ),
    # 5 March 2024 / 5th of March, 2024 / 5 March
    re.compile(
        rf"(?<![\w.,])(?P<d>[0-9]{{1,2}}){_ORD}\s+(?:of\s+)?(?P<mon>{_MONTH_ALT})\b\.?"
        rf"(?:,?\s+(?P<y>[12][0-9]{{3}})(?![0-9]))?"
    ),
    # March 2024 / Mar. 2024 / March of 2024
    re.compile(rf"(?<![\w])(?P<mon>{_MONTH_ALT})\.?,?\s+(?:of\s+)?(?P<y>[12][0-9]{{3}})(?![0-9])"),
    # 03/05/2024, 5.3.2024
    re.compile(
        r"(?<![\w.,/])(?P<a>[0-9]{1,2})([/.])(?P<b>[0-9]{1,2})\2(?P<y>[12][0-9]{3})(?![\w]|[.,/][0-9])"
    ),
)

_CURRENCY_PREFIX = r"(?P<cur>US\$|A\$|C\$|\$|€|£|¥|₹|₩)"
_NUMBER_CORE = r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?P<frac>\.[0-9]+)?"
_SCALE_WORDS = r"(?P<scale>million|billion|trillion|thousand|bn)\b"
_SCALE_SHORT = r"(?P<short>mn|[mbkMBK])\b"
_NUMBER = re.compile(
    r"(?<![\w.])"
    r"(?P<neg>(?<![0-9)\]])[-−])?"
    + _CURRENCY_PREFIX
    + r"?\s?"
    + _NUMBER_CORE
    + r"(?![0-9]|[.,][0-9])"
    + r"(?:\s?"
    + _SCALE_WORDS
    + r"|"
    + _SCALE_SHORT
    + r")?"
    + r"(?P<pct>\s?%|\s+per\s?cent\b|\s+pct\b)?"
    + r"(?P<curword>\s+(?:US\s+)?(?:dollars|usd|euros?|eur|pounds\s+sterling|gbp|yen|jpy|rupees|inr)\b)?",
    re.IGNORECASE,
)
_DOTTED = re.compile(r"(?<![\w.])[0-9]+(?:\.[0-9]+){2,}(?![\w]|\.[0-9])")
_RANGE_GAP = re.compile(r"^\s*[-–—]\s*$|^\s+to\s+$", re.IGNORECASE)

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_CONTENT_WORD = re.compile(r"[^\W\d_]{3,}")
_SENTENCE_END = re.compile(r"[.!?…:\n\"“”«»]")
_MASK = " ⁂ "

_Adder = Callable[[str, str], None]

_SCALES = {
    "thousand": 3, "k": 3, "million": 6, "mn": 6, "m": 6, "billion": 9, "bn": 9, "b": 9, "trillion": 12,
}  # fmt: skip
_CUR_WORDS = {
    "dollars": "$", "usd": "$", "euro": "€", "euros": "€", "eur": "€", "gbp": "£", "yen": "¥",
    "jpy": "¥", "rupees": "₹", "inr": "₹", "sterling": "£",
}  # fmt: skip
_CUR_SYMBOLS = {"us$": "$", "a$": "A$", "c$": "C$"}

# ---------------------------------------------------------------------------------------------
# Analysis


@dataclass
class Analysis:
    """Everything the checks need about one text (internal; :class:`Facts` is the public part)."""

    facts: Facts
    text: str  # NFKC, whitespace collapsed: quote presence
    ngrams: set[tuple[str, ...]]  # word n-grams (n <= MAX_NAME_WORDS), case kept: name presence
    stems: set[str]  # content-word stems: overlap
    chars: int  # length of the whitespace-collapsed text
    number_evidence: set[str] = field(default_factory=set)  # numbers + spelled numbers + date parts
    date_evidence: set[str] = field(default_factory=set)  # dates + partial forms of full dates


def analyse(text: str) -> Analysis:
    """Extract facts and presence evidence from ``text``."""
    surface: dict[str, dict[str, str]] = {c: {} for c in CATEGORIES}

    def add(category: str, value: str, raw: str) -> None:
        if value and value not in surface[category]:
            surface[category][value] = " ".join(raw.split())

    # URLs, e-mails and quotations: the spans masking protects. URLs and e-mails are then masked so that
    # their digits and words are not counted again.
    url_spans: list[tuple[int, int]] = []
    for span in fact_spans(text):
        if span.kind == "quote":
            # Trailing punctuation may sit inside or outside the marks ("days." / "days".): not compared.
            value = " ".join(_nfkc(span.inner(text)).split()).rstrip(".,;:!?…").rstrip()
            add("quotes", value, value)
            continue
        raw = span.text(text)
        if span.kind == "url":
            add("urls", _normalize_url(_nfkc(raw)), raw)
        else:
            add("emails", _nfkc(raw).lower(), raw)
        url_spans.append((span.start, span.end))
    norm = _nfkc(text)
    masked = _nfkc(_mask(text, url_spans))

    masked = _extract_dates(masked, lambda v, raw: add("dates", v, raw))
    _extract_numbers(masked, lambda v, raw: add("numbers", v, raw))

    words = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(masked)]
    for name in _names(masked, words):
        add("names", name, name)

    facts = Facts(**{c: sorted(surface[c]) for c in CATEGORIES})
    facts._surface = surface

    # Names start with a capitalised word, so only n-grams starting with one are kept.
    tokens = [_strip_possessive(w) for w, _, _ in words]
    ngrams: set[tuple[str, ...]] = set()
    for i, token in enumerate(tokens):
        if token and _is_capitalised(token):
            for n in range(1, min(MAX_NAME_WORDS, len(tokens) - i) + 1):
                ngrams.add(tuple(tokens[i : i + n]))

    number_evidence = set(facts.numbers)
    for w in _CONTENT_WORD.findall(masked):
        spelled = SPELLED_NUMBERS.get(w.lower())
        if spelled:
            number_evidence.add(spelled)
    date_evidence = set(facts.dates)
    for d in facts.dates:
        date_evidence.update(ambiguous_readings(d))
        parts = d.split("-")
        if len(parts) == 3 and parts[0]:  # full date YYYY-MM-DD
            date_evidence.update({f"{parts[0]}-{parts[1]}", f"--{parts[1]}-{parts[2]}"})
            number_evidence.update({parts[0], str(int(parts[2]))})
        elif len(parts) == 2:  # YYYY-MM
            number_evidence.add(parts[0])
        elif len(parts) == 4:  # --MM-DD
            number_evidence.add(str(int(parts[3])))

    collapsed = " ".join(norm.split())
    return Analysis(
        facts=facts,
        text=collapsed,
        ngrams=ngrams,
        stems=content_stems(masked),
        chars=len(collapsed),
        number_evidence=number_evidence,
        date_evidence=date_evidence,
    )


def extract_facts(text: str) -> Facts:
    """Normalised numbers, dates, URLs, e-mails, quoted strings and capitalised names of ``text``."""
    return analyse(text).facts


# ---------------------------------------------------------------------------------------------
# Helpers


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("’", "'")


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:
            continue
        out.append(text[pos:start])
        out.append(_MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _normalize_url(url: str) -> str:
    m = re.match(r"(?i)^((?:https?|ftp)://)?([^/?#]*)(.*)$", url)
    if not m:  # pragma: no cover - the pattern matches every string
        return url
    scheme, host, rest = m.groups()
    if rest == "/":
        rest = ""
    return (scheme or "").lower() + host.lower() + rest


def _extract_dates(text: str, add: _Adder) -> str:
    spans: list[tuple[int, int]] = []
    taken = bytearray(len(text))
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if any(taken[m.start() : m.end()]):
                continue
            value = _date_value(m)
            if value is None:
                continue
            add(value, m.group(0))
            spans.append(m.span())
            taken[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
    return _mask(text, spans)


def _date_value(m: re.Match[str]) -> str | None:
    groups = m.groupdict()
    year = groups.get("y")
    if "a" in groups:  # numeric a/b/yyyy
        a, b = int(groups["a"]), int(groups["b"])
        if a > 12 and 1 <= b <= 12 and a <= 31:
            return _iso(int(year or 0), b, a)
        if b > 12 and 1 <= a <= 12 and b <= 31:
            return _iso(int(year or 0), a, b)
        if 1 <= a <= 12 and 1 <= b <= 12:
            return f"{a}/{b}/{year}"  # ambiguous (US or European order): compared as written
        return None
    month = int(groups["m"]) if groups.get("m") else MONTHS[groups["mon"].lower()]
    day = int(groups["d"]) if groups.get("d") else None
    if not 1 <= month <= 12 or (day is not None and not 1 <= day <= 31):
        return None
    if day is None:
        return f"{int(year or 0):04d}-{month:02d}"
    if year is None:
        return f"--{month:02d}-{day:02d}"
    return _iso(int(year), month, day)


def ambiguous_readings(value: str) -> set[str]:
    """Both ISO readings of an ambiguous numeric date ``"3/5/2024"`` (nothing for other values)."""
    parts = value.split("/")
    if len(parts) != 3:
        return set()
    a, b, year = (int(p) for p in parts)
    return {_iso(year, a, b), _iso(year, b, a)}


def _iso(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _extract_numbers(text: str, add: _Adder) -> None:
    for m in _DOTTED.finditer(text):
        add(m.group(0), m.group(0))
    found = [_Num.from_match(m) for m in _NUMBER.finditer(text)]
    # Ranges share a currency, scale or percent sign: "$10–20 million", "10-20%", "10 - 20".
    for left, right in itertools.pairwise(found):
        gap = text[left.end : right.start]
        if right.negative and not gap.strip():
            right.negative = False  # "10 -20" is a range, not minus twenty
            right.raw = right.raw.lstrip("-−")
        elif not _RANGE_GAP.match(gap):
            continue
        if right.percent and not left.percent:
            left.percent = True
        if right.scale and not left.scale and not left.percent:
            left.scale = right.scale
        if left.currency and not right.currency:
            right.currency = left.currency
    for num in found:
        add(num.canonical(), num.raw)


@dataclass
class _Num:
    int_part: str
    frac: str
    negative: bool
    currency: str
    scale: int
    percent: bool
    raw: str
    start: int
    end: int

    @classmethod
    def from_match(cls, m: re.Match[str]) -> _Num:
        short = m.group("short")
        currency = _CUR_SYMBOLS.get((m.group("cur") or "").lower(), m.group("cur") or "")
        if short and not currency:
            # "5m" / "3k" are scales only after a currency ("$5m"); otherwise a unit (metres, ...).
            end, scale, percent, curword = m.start("short"), 0, False, ""
        else:
            end = m.end()
            word = (m.group("scale") or short or "").lower()
            scale = _SCALES.get(word, 0)
            percent = bool(m.group("pct"))
            curword = m.group("curword") or ""
        if curword and not currency:
            currency = _CUR_WORDS.get(curword.split()[-1].lower(), "")
        return cls(
            int_part=m.group("int").replace(",", ""),
            frac=(m.group("frac") or "")[1:],
            negative=bool(m.group("neg")),
            currency=currency,
            scale=scale,
            percent=percent,
            raw=m.string[m.start() : end].strip(),
            start=m.start(),
            end=end,
        )

    def canonical(self) -> str:
        digits = self.int_part + self.frac
        point = len(self.int_part) + self.scale
        if point >= len(digits):
            whole, frac = digits + "0" * (point - len(digits)), ""
        else:
            whole, frac = digits[:point], digits[point:]
        whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
        value = whole + ("." + frac if frac else "")
        sign = "-" if self.negative and value != "0" else ""
        return f"{sign}{self.currency}{value}{'%' if self.percent else ''}"


def _strip_possessive(word: str) -> str:
    if word.endswith(("'s", "'S", "’s")):
        return word[:-2]
    return word


def _is_capitalised(word: str) -> bool:
    return word[0].isupper()


def _is_stopword(word: str) -> bool:
    low = word.lower()
    if low in STOPWORDS or low in DAYS or low in MONTHS:
        return True
    if "'" in low:
        base, _, tail = low.partition("'")
        return base in STOPWORDS or tail in ("t", "m", "ve", "re", "ll", "d")
    return False


def _is_acronym(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _sentence_start(gap: str, previous: str | None) -> bool:
    """Whether a word preceded by ``gap`` (text since the previous word) starts a sentence."""
    if previous is None:
        return True
    if not _SENTENCE_END.search(gap):
        return False
    # A full stop after an abbreviation or an initial does not end the sentence: "Dr. Smith", "J. Smith".
    abbreviation = previous.lower() in ABBREVIATIONS or (len(previous) == 1 and previous.isupper())
    return not (gap.strip() == "." and "\n" not in gap and abbreviation)


def _names(text: str, words: list[tuple[str, int, int]]) -> list[str]:
    """Capitalised names of ``text`` (see the module docstring for the rules)."""
    runs: list[tuple[list[str], bool]] = []  # (words, starts at a sentence start)
    current: list[str] = []
    current_initial = False
    pending: list[str] = []  # a lower-case connector waiting for a following capitalised word

    def close() -> None:
        nonlocal current, pending
        if current:
            runs.append((current, current_initial))
        current, pending = [], []

    prev_end = 0
    prev_word: str | None = None
    for word, start, end in words:
        gap = text[prev_end:start]
        initial = _sentence_start(gap, prev_word)
        adjacent = prev_word is not None and gap.isspace() and "\n" not in gap
        token = _strip_possessive(word)
        if token and _is_capitalised(token):
            if current and adjacent and not _is_stopword(token):
                current.extend(pending)
                current.append(token)
                pending = []
            else:
                # A capitalised common word ("And", "The") also splits a run: "Key Findings And Next".
                close()
                current, current_initial = [token], initial
        elif current and adjacent and token in CONNECTORS and not pending:
            pending = [token]
        else:
            close()
        if token != word:
            close()  # a possessive ends the name: "Google's team"
        prev_end, prev_word = end, word
    close()

    names: list[str] = []
    for run, initial in runs:
        while run and _is_stopword(run[0]):
            run, initial = run[1:], False
        while run and run[-1] in CONNECTORS:
            run = run[:-1]
        if not run or len(run) > MAX_NAME_WORDS:
            continue
        if len(run) == 1:
            word = run[0]
            if len(word) < 2:
                continue
            if initial and not _is_acronym(word):
                continue  # "Researchers found ...": a sentence-initial word is not evidently a name
        names.append(" ".join(run))
    return names


# ---------------------------------------------------------------------------------------------
# Content words (meaning-drift signal)

CONTENT_STOPWORDS = STOPWORDS | _words(
    """
    there their this that with from have been were will would could should shall about into than
    then them they what when where which while who whom whose your yours also very more most less
    least just only some such other any each many much over under here said says make made making
    using used use get got gets getting like well even still yet way ways thing things lot lots
    new can may might must does doing did done being because per via
    """
)

_SUFFIXES = (
    "ational", "ization", "isation", "fulness", "iveness", "ousness", "ements", "ments", "ation",
    "ations", "ingly", "edly", "ness", "ment", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s",
)  # fmt: skip


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A crude stem: strip one common suffix, then keep at most six characters."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:6]


def content_stems(text: str) -> set[str]:
    """Stems of the content words of ``text`` (lower-cased, stopwords removed)."""
    out: set[str] = set()
    for w in _CONTENT_WORD.findall(text):
        low = w.lower()
        if low in CONTENT_STOPWORDS or low in SPELLED_NUMBERS:
            continue
        out.add(stem(low))
    return out
