"""The AI-tell detector: tell-tale patterns of machine-written prose, counted and weighed.

``CATALOGUE`` is the single source of truth — the detector, ``docs/ai-tells.md`` (checked against it by
tests/unit/test_tells.py) and the prompts' list of phrases to avoid all come from it. Each ``Tell`` has an
id, a category, a weight (points per occurrence), a short explanation, and either a regular expression
(a phrase tell) or a measurement done here (``MEASURED``: sentence rhythm, rule-of-three lists, em-dash
habits, sign-posting and hedging stacks).

Scoring, deterministic and documented:

1. Text is cut into paragraphs (blank lines) and sentences. In each paragraph every phrase tell counts
   its matches, at most ``max_count`` of them (one repeated word cannot dominate); the paragraph-level
   measured tells add theirs. Points = Σ weight × count.
2. Over the whole unit scored (a chunk, or a document's prose chunks together) ``uniform_rhythm`` adds
   its weight per 100 words when the sentence lengths barely vary.
3. ``density`` = points per 100 words, over at least ``MIN_WORDS`` words (a short text is not blown up by
   one match); ``score`` = 100 × (1 − e^(−density / SCALE)), from 0 (no tells) towards 100.
   A score of ``FLAG_SCORE`` or more is *flagged*: it reads machine-written.

The detector is for judging users' models and prompts; it says nothing about who wrote a text and is
never used to accept or reject a job.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from humanizer.chunking.sentences import sentence_spans

Category = Literal["chatbot", "opener", "stock_phrase", "signpost", "hedge", "construction", "rhythm"]

CATEGORY_TITLES: dict[str, str] = {
    "chatbot": "Chatbot artefacts",
    "opener": "Stock openers",
    "stock_phrase": "Stock vocabulary and phrases",
    "signpost": "Sign-posting",
    "hedge": "Hedging",
    "construction": "Formulaic constructions",
    "rhythm": "Rhythm and structure (measured)",
}

VERSION = "1"
MIN_WORDS = 60
SCALE = 8.0
FLAG_SCORE = 35.0

# measured tells' thresholds (their explanations quote them)
RHYTHM_MIN_SENTENCES = 6
RHYTHM_MAX_CV = 0.30
TRIADS_ALLOWED = 1  # per paragraph
DASH_WORDS = 60  # one dash allowed per this many words of a paragraph, and two in any paragraph
DASHES_ALLOWED_MIN = 2
STACK_MIN = 3  # sign-posted sentences in a paragraph
STACK_SHARE = 0.4
HEDGES_MIN = 4  # hedges in a paragraph
HEDGES_PER_100_WORDS = 4.0


@dataclass(frozen=True)
class Tell:
    id: str
    category: Category
    weight: float
    explanation: str
    pattern: str | None = None  # regex in lower case, matched case-insensitively (' matches ’ too); None: measured
    start: bool = False  # the pattern must open a sentence
    max_count: int = 3  # occurrences counted per paragraph
    avoid: str | None = None  # how the prompts name it; None: not listed there


def _p(*words: str) -> str:
    return r"\b(?:" + "|".join(words) + r")\b"


CATALOGUE: tuple[Tell, ...] = (
    # --- chatbot artefacts: a reply to a chat, not a text ----------------------------------------------
    Tell("hope_this_helps", "chatbot", 6, "Sign-off of an assistant answering a question.",
         r"\b(?:i )?hope (?:this|that|it) helps\b", avoid="I hope this helps"),
    Tell("as_an_ai", "chatbot", 6, "The model talking about itself.",
         r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) an ai\b", avoid="As an AI"),
    Tell("knowledge_cutoff", "chatbot", 6, "The model's training date leaking into the text.",
         r"\bas of my (?:last )?(?:knowledge )?(?:update|cut-?off)\b|\bmy training data\b"),
    Tell("certainly", "chatbot", 5, "Eager assent opening an answer (\"Certainly!\", \"Absolutely!\").",
         r"(?:certainly|absolutely|of course|sure)(?:!|, here)", start=True, avoid="Certainly!"),
    Tell("great_question", "chatbot", 5, "Praise for the question.", r"\b(?:great|excellent|good) question\b",
         avoid="Great question"),
    Tell("happy_to_help", "chatbot", 5, "Offer of service.",
         r"\bi(?:'d| would|'m| am) (?:be )?(?:happy|glad|delighted) to help\b", avoid="I'd be happy to help"),
    Tell("let_me_know", "chatbot", 4, "Invitation to continue the chat.",
         r"\blet me know if\b|\bfeel free to (?:ask|reach out|let me know)\b|\b(?:do|would) you (?:like|want) me to\b",
         avoid="Let me know if you need anything else"),
    Tell("heres_the_rewrite", "chatbot", 6, "The model announcing its output.",
         r"\bhere(?:'s| is) (?:a |the |your )?(?:rewritten|revised|improved|humanized|updated|polished) "
         r"(?:version|text|draft)\b", avoid="Here is the rewritten text"),
    Tell("apologize_confusion", "chatbot", 5, "Apology for an earlier turn.",
         r"\bi apologi[sz]e for (?:the|any) (?:confusion|oversight|inconvenience)\b"),
    # --- stock openers ---------------------------------------------------------------------------------
    Tell("todays_world", "opener", 4, "Scene-setting about the present day that says nothing.",
         r"\bin today's (?:fast-paced |digital |modern |ever-changing |rapidly (?:evolving|changing) |"
         r"interconnected |competitive )?(?:world|age|era|landscape|society)\b",
         avoid="In today's fast-paced world"),
    Tell("ever_evolving", "opener", 3, "The 'ever-evolving landscape' cliché.",
         r"\bever-(?:evolving|changing|growing|expanding)\b|\brapidly (?:evolving|changing) (?:world|landscape)\b",
         avoid="the ever-evolving landscape"),
    Tell("in_an_era", "opener", 3, "Era-setting opener.", r"in an (?:era|age|world) (?:where|of|when)\b",
         start=True, avoid="In an era where"),
    Tell("lets_dive_in", "opener", 3, "Blog-style invitation to read on.",
         r"\blet's (?:dive|delve|explore|take a (?:closer|deeper) look|unpack|break (?:it|this) down)\b",
         avoid="Let's dive in"),
    Tell("imagine_a_world", "opener", 3, "Rhetorical scene-setting.",
         r"\bimagine a world\b|\bpicture this\b|\bhave you ever wondered\b", avoid="Imagine a world where"),
    Tell("when_it_comes_to", "opener", 1.5, "Filler topic opener.", r"when it comes to\b", start=True,
         avoid="When it comes to"),
    Tell("in_this_article", "opener", 2.5, "The text announcing itself.",
         r"\bin this (?:article|blog post|post|guide|essay), (?:we|i)(?:'ll| will)\b"),
    # --- stock vocabulary and phrases ------------------------------------------------------------------
    Tell("delve", "stock_phrase", 3, "The best-known marker word of chat models.", _p("delve", "delves", "delved",
         "delving"), avoid="delve"),
    Tell("tapestry", "stock_phrase", 3, "Figurative 'rich tapestry'.", _p("tapestry", "tapestries"),
         avoid="tapestry"),
    Tell("testament", "stock_phrase", 2.5, "'A testament to' as praise.", r"\b(?:a|is a|stands as a) testament to\b",
         avoid="a testament to"),
    Tell("navigate_complexities", "stock_phrase", 3, "'Navigate the complexities/intricacies'.",
         r"\bnavigat(?:e|es|ed|ing) (?:the )?(?:complexit|intricac|nuances|challenges|landscape)",
         avoid="navigate the complexities"),
    Tell("realm", "stock_phrase", 2, "'In the realm of'.", r"\b(?:in|into|within) the realm of\b",
         avoid="in the realm of"),
    Tell("landscape", "stock_phrase", 2, "Figurative landscape of a field.",
         r"\bthe (?:digital|business|modern|evolving|complex|competitive|technological|media|current|"
         r"political|regulatory) landscape\b", avoid="the digital landscape"),
    Tell("crucial_role", "stock_phrase", 2, "'Plays a crucial/pivotal/vital role'.",
         r"\bplay(?:s|ed|ing)? an? (?:crucial|pivotal|vital|key|significant|essential|critical|important) role\b",
         avoid="plays a crucial role"),
    Tell("pivotal", "stock_phrase", 1.5, "Inflated importance.", _p("pivotal", "paramount"), avoid="pivotal"),
    Tell("seamless", "stock_phrase", 1.5, "Marketing adjective.", _p("seamless", "seamlessly"), avoid="seamless"),
    Tell("robust", "stock_phrase", 1, "Vague praise.", _p("robust"), max_count=2),
    Tell("leverage", "stock_phrase", 1.5, "'Leverage' for 'use'.", _p("leverage", "leverages", "leveraged",
         "leveraging"), avoid="leverage"),
    Tell("harness_unlock", "stock_phrase", 3, "'Harness the power', 'unlock the potential'.",
         r"\bharness(?:es|ed|ing)? the (?:power|potential)\b|\bunlock(?:s|ed|ing)? (?:the |your |its |their )?"
         r"(?:full )?(?:potential|power)\b|\bunleash(?:es|ed|ing)?\b", avoid="unlock the full potential"),
    Tell("embark_journey", "stock_phrase", 3, "'Embark on a journey'.",
         r"\bembark(?:s|ed|ing)? on (?:a|an|the|this|your|our) (?:\w+ )?(?:journey|adventure|quest)\b",
         avoid="embark on a journey"),
    Tell("game_changer", "stock_phrase", 2, "Hype.", r"\bgame[- ]changer\b|\bgame-changing\b|\brevolutioni[sz]e",
         avoid="game-changer"),
    Tell("cutting_edge", "stock_phrase", 1.5, "Hype.", r"\bcutting-edge\b|\bstate-of-the-art\b", max_count=2,
         avoid="cutting-edge"),
    Tell("foster_elevate", "stock_phrase", 1.5, "Abstract uplift verbs.",
         _p("foster", "fosters", "fostering", "elevate", "elevates", "elevating", "empower", "empowers",
            "empowering"), avoid="foster"),
    Tell("importance_of", "stock_phrase", 2, "'Highlights the importance of' and kin.",
         r"\b(?:highlight|underscor|emphasi[sz]|stress|demonstrat|reinforc)(?:e|es|ed|ing|s)? the "
         r"(?:importance|significance|value|need) of\b", avoid="highlights the importance of"),
    Tell("underscore", "stock_phrase", 1.5, "'Underscores' (the verb) for 'shows'.",
         r"\bunderscor(?:e|es|ed|ing) (?:the|a|an|how|that|its|their|our|this|these|why|what)\b",
         avoid="underscores"),
    Tell("meticulous", "stock_phrase", 2, "Favourite intensifier.", _p("meticulous", "meticulously"),
         avoid="meticulous"),
    Tell("multifaceted", "stock_phrase", 2, "Abstract vocabulary.",
         _p("multifaceted", "holistic", "synergy", "synergies", "synergistic"), avoid="multifaceted"),
    Tell("myriad_plethora", "stock_phrase", 2, "'A myriad of', 'a plethora of'.", _p("myriad", "plethora"),
         avoid="a myriad of"),
    Tell("intricate", "stock_phrase", 1.5, "Favourite adjective.", _p("intricate", "intricacies"),
         avoid="intricate"),
    Tell("showcase", "stock_phrase", 1, "Brochure verb.", _p("showcase", "showcases", "showcasing",
         "showcased"), avoid="showcase"),
    Tell("vibrant", "stock_phrase", 1, "Brochure adjectives.", _p("vibrant", "bustling", "captivating",
         "breathtaking"), avoid="vibrant"),
    Tell("resonate", "stock_phrase", 1.5, "'Resonates with'.", r"\bresonat(?:e|es|ed|ing) (?:with|deeply)\b",
         avoid="resonates with"),
    Tell("dive_deep", "stock_phrase", 1.5, "'Dive into', 'deep dive'.",
         r"\b(?:dive|dives|diving) (?:deep )?into\b|\bdeep dive\b", avoid="dive into"),
    Tell("shed_light", "stock_phrase", 1.5, "'Shed light on'.", r"\bsh(?:ed|eds|edding) (?:some )?light on\b",
         avoid="shed light on"),
    Tell("beacon_trove", "stock_phrase", 2.5, "Figurative 'beacon of', 'treasure trove', 'symphony of'.",
         r"\ba beacon of\b|\btreasure trove\b|\ba symphony of\b|\bthe heart(?:beat)? of innovation\b",
         avoid="a beacon of"),
    Tell("forefront", "stock_phrase", 1.5, "'At the forefront of'.", r"\bat the forefront of\b",
         avoid="at the forefront of"),
    Tell("insights", "stock_phrase", 2, "'Valuable/actionable insights', 'key takeaways'.",
         r"\b(?:valuable|actionable|deeper|key) insights?\b|\bkey takeaways?\b", avoid="valuable insights"),
    Tell("commendable", "stock_phrase", 1.5, "Evaluative filler.", _p("commendable", "noteworthy",
         "invaluable"), avoid="noteworthy"),
    Tell("fast_paced", "stock_phrase", 1.5, "'Fast-paced'.", r"\bfast-paced\b", avoid="fast-paced"),
    Tell("streamline", "stock_phrase", 1, "Process jargon.", _p("streamline", "streamlines", "streamlined",
         "streamlining"), max_count=2),
    # --- sign-posting ----------------------------------------------------------------------------------
    Tell("important_to_note", "signpost", 3, "Announces a point instead of making it.",
         r"\bit(?:'s| is) (?:important|crucial|essential|vital|key) to (?:note|remember|understand|recognize|"
         r"recognise|consider)\b", avoid="It's important to note that"),
    Tell("worth_noting", "signpost", 2.5, "Announces a point instead of making it.",
         r"\bit(?:'s| is) worth (?:noting|mentioning|highlighting|considering)\b|\bit should be noted\b",
         avoid="It is worth noting that"),
    Tell("goes_without_saying", "signpost", 2, "Says what it says goes without saying.",
         r"\bit goes without saying\b|\bneedless to say\b", avoid="needless to say"),
    Tell("furthermore", "signpost", 1, "Essay connectors opening a sentence.",
         r"(?:furthermore|moreover|additionally),", start=True, avoid="Furthermore, / Moreover, / Additionally,"),
    Tell("in_conclusion", "signpost", 2, "Essay-style summary openers.",
         r"(?:in conclusion|in summary|to sum up|to summari[sz]e|all in all|in essence),", start=True,
         avoid="In conclusion,"),
    Tell("ultimately", "signpost", 1, "Wrap-up words opening a sentence.", r"(?:ultimately|overall|importantly|"
         r"notably),", start=True, avoid="Ultimately, / Overall,"),
    Tell("that_being_said", "signpost", 1.5, "Pivot filler.", r"\b(?:with )?that being said\b|\bat the end of "
         r"the day\b|\bfirst and foremost\b|\blast but not least\b", avoid="That being said"),
    Tell("essential_to", "signpost", 1.5, "Imperatives wrapped as 'it is essential to'.",
         r"\bit(?:'s| is) (?:essential|crucial|vital|imperative) (?:to|that)\b", avoid="It is essential to"),
    # --- hedging ---------------------------------------------------------------------------------------
    Tell("potentially", "hedge", 1.5, "Doubled hedge ('could potentially', 'may potentially').",
         r"\b(?:can|could|may|might) potentially\b", avoid="could potentially"),
    Tell("could_be_argued", "hedge", 1.5, "Impersonal hedge.", r"\bit could be argued\b|\bone could argue\b|"
         r"\bit can be said\b", avoid="it could be argued"),
    Tell("generally_speaking", "hedge", 1, "Filler hedges.", r"\bgenerally speaking\b|\bto some extent\b|"
         r"\bin many ways\b|\bmore often than not\b", avoid="generally speaking"),
    # --- formulaic constructions -----------------------------------------------------------------------
    Tell("not_only_but_also", "construction", 2, "The 'not only … but also' balance.",
         r"\bnot only\b[^.!?;]{1,100}?\bbut (?:also|rather)\b", avoid="not only … but also"),
    Tell("not_just_its", "construction", 2.5, "'It's not just X — it's Y' reframing.",
         r"\b(?:it|this|that)(?:'s| is)(?: not|n't) (?:just|only|merely|simply) "
         r"(?:about )?[^.!?;]{1,60}?[,;:—–-]+\s*(?:it|this|that)(?:'s| is)\b|\bmore than (?:just )?(?:a |an )?"
         r"[^.!?;]{1,40}?[;:—–]+\s*(?:it|this|that)(?:'s| is)\b|\bthe (?:real )?(?:question|point|goal|issue) "
         r"(?:isn't|is not) [^.!?;]{1,60}?[—–;:,]+\s*it(?:'s| is)\b", avoid="It's not just X, it's Y"),
    Tell("whether_youre", "construction", 2, "Audience sweep ('Whether you're a beginner or an expert').",
         r"\bwhether you(?:'re| are) (?:a|an) [^.!?;]{1,50}? or (?:a|an|just|someone)\b",
         avoid="Whether you're a … or a …"),
    Tell("more_than_just", "construction", 1.5, "'More than just'.", r"\bmore than just\b", avoid="more than just"),
    # --- measured: rhythm and structure ----------------------------------------------------------------
    Tell("uniform_rhythm", "rhythm", 2.5,
         f"Sentence lengths barely vary: coefficient of variation below {RHYTHM_MAX_CV} over at least "
         f"{RHYTHM_MIN_SENTENCES} sentences. Counted once per 100 words of the unit scored."),
    Tell("rule_of_three", "rhythm", 1,
         f"Lists of exactly three ('clear, concise, and compelling'): each beyond {TRIADS_ALLOWED} per paragraph.",
         max_count=3),
    Tell("em_dash", "rhythm", 1.5,
         f"Em-dash habit: each dash (—, spaced – or --) beyond one per {DASH_WORDS} words of a paragraph "
         f"(at least {DASHES_ALLOWED_MIN} allowed).", max_count=4),
    Tell("signpost_stack", "rhythm", 2,
         f"Sign-posting stack: {STACK_MIN} or more sentences of a paragraph, and at least {STACK_SHARE:.0%} of them, "
         "open with a connector (however, moreover, additionally, ultimately, thus …).", max_count=1),
    Tell("hedge_stack", "rhythm", 2,
         f"Hedging stack: {HEDGES_MIN} or more hedges in a paragraph (potentially, arguably, perhaps, possibly, "
         f"somewhat, typically, it seems …), at least {HEDGES_PER_100_WORDS:g} per 100 words.", max_count=1),
)

BY_ID: dict[str, Tell] = {t.id: t for t in CATALOGUE}
MEASURED: frozenset[str] = frozenset(t.id for t in CATALOGUE if t.pattern is None)


def tell_regex_source(pattern: str) -> str:
    """A catalogue pattern as a regex: an apostrophe matches the straight and the typographic one."""
    return pattern.replace("'", "['’]")


def _alternation(start: bool) -> tuple[re.Pattern[str], tuple[tuple[str, re.Pattern[str]], ...]]:
    """One regex for finding where any of the phrase tells matches, and each tell's own regex to say which
    one did (the first in catalogue order, as the alternation would). Named groups in one alternation
    would say it directly, but cost 20x the time (sre cannot optimise them): 2 s on 1 MB instead of 0.1 s.
    They match lower-cased text (the patterns are lower case): IGNORECASE costs as much again."""
    tells = [t for t in CATALOGUE if t.pattern is not None and t.start == start]
    each = tuple((t.id, re.compile(tell_regex_source(t.pattern or ""))) for t in tells)
    return re.compile("|".join(f"(?:{tell_regex_source(t.pattern or '')})" for t in tells)), each


_ANYWHERE, _ANYWHERE_EACH = _alternation(start=False)
_AT_START, _AT_START_EACH = _alternation(start=True)


def _which(each: tuple[tuple[str, re.Pattern[str]], ...], text: str, pos: int) -> str | None:
    for tell_id, rx in each:
        if rx.match(text, pos):
            return tell_id
    return None
_WORD = re.compile(r"\w+(?:['’-]\w+)*")
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_LEAD = re.compile(r"^[\s\"'“‘(\[*_#>-]+")
_ITEM = r"[A-Za-z][\w'’-]*(?: [A-Za-z][\w'’-]*){0,2}"
_TRIAD = re.compile(rf"\b{_ITEM}, {_ITEM},? (?:and|or) {_ITEM}\b")
_DASH = re.compile(r"—| – | -- ")
_CONNECTORS = re.compile(
    r"(?:however|moreover|furthermore|additionally|in addition|ultimately|overall|importantly|notably|"
    r"consequently|as a result|in conclusion|in summary|finally|firstly|secondly|thus|therefore|hence|"
    r"that said|indeed|also|plus|meanwhile|similarly|likewise|conversely|nevertheless|nonetheless)\b",
    re.IGNORECASE,
)
_HEDGES = re.compile(
    r"\b(?:potentially|arguably|perhaps|possibly|somewhat|typically|presumably|it seems|it appears|"
    r"to some extent|in some cases|in many cases|may or may not|it is possible that|tends? to|can help)\b",
    re.IGNORECASE,
)


# ---- measuring --------------------------------------------------------------------------------------
@dataclass
class TellStats:
    """What was counted in a text: enough to score it, and to add texts up (a document from its chunks)."""

    words: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    sentence_lengths: list[int] = field(default_factory=list)

    def __iadd__(self, other: TellStats) -> TellStats:
        self.words += other.words
        self.counts.update(other.counts)
        self.sentence_lengths.extend(other.sentence_lengths)
        return self


def analyse(text: str) -> TellStats:
    """Count every tell in ``text`` (paragraph by paragraph; see the module docstring)."""
    stats = TellStats()
    start = 0
    for m in [*_PARAGRAPH.finditer(text), None]:
        end = m.start() if m is not None else len(text)
        paragraph = text[start:end].strip()
        if paragraph:
            _paragraph(paragraph, stats)
        if m is not None:
            start = m.end()
    return stats


def _paragraph(text: str, stats: TellStats) -> None:
    words = len(_WORD.findall(text))
    if not words:
        return
    found: Counter[str] = Counter()
    low = text.lower()
    for m in _ANYWHERE.finditer(low):
        tell_id = _which(_ANYWHERE_EACH, low, m.start())
        if tell_id:
            found[tell_id] += 1
    sentences = [text[a:b] for a, b in sentence_spans(text)]
    opened = 0
    for sentence in sentences:
        head = _LEAD.sub("", sentence)
        if _AT_START.match(head.lower()):
            tell_id = _which(_AT_START_EACH, head.lower(), 0)
            if tell_id:
                found[tell_id] += 1
        if _CONNECTORS.match(head):
            opened += 1
        n = len(_WORD.findall(sentence))
        if n:
            stats.sentence_lengths.append(n)
    triads = len(_TRIAD.findall(text))
    if triads > TRIADS_ALLOWED:
        found["rule_of_three"] += triads - TRIADS_ALLOWED
    dashes = len(_DASH.findall(text))
    allowed = max(DASHES_ALLOWED_MIN, words // DASH_WORDS)
    if dashes > allowed:
        found["em_dash"] += dashes - allowed
    if opened >= STACK_MIN and opened >= STACK_SHARE * len(sentences):
        found["signpost_stack"] += 1
    hedges = len(_HEDGES.findall(text))
    if hedges >= HEDGES_MIN and hedges * 100 / words >= HEDGES_PER_100_WORDS:
        found["hedge_stack"] += 1
    for tell_id, n in found.items():
        stats.counts[tell_id] += min(n, BY_ID[tell_id].max_count)
    stats.words += words


def rhythm_cv(lengths: Sequence[int]) -> float | None:
    """Coefficient of variation of sentence lengths (None below ``RHYTHM_MIN_SENTENCES`` sentences)."""
    if len(lengths) < RHYTHM_MIN_SENTENCES:
        return None
    mean = statistics.fmean(lengths)
    return statistics.pstdev(lengths) / mean if mean else None


# ---- scoring ----------------------------------------------------------------------------------------
class TellHit(BaseModel):
    id: str
    category: str
    count: float  # occurrences counted (uniform_rhythm: per 100 words)
    points: float


class TellScore(BaseModel):
    """The score of one text (a chunk, or a document's prose), 0 (no tells) .. 100."""

    score: float = Field(ge=0, le=100)
    flagged: bool
    points: float
    words: int
    rhythm_cv: float | None = None
    hits: list[TellHit] = Field(default_factory=list)  # most points first


def score_stats(stats: TellStats, max_hits: int = 10) -> TellScore:
    counts: dict[str, float] = dict(stats.counts)
    cv = rhythm_cv(stats.sentence_lengths)
    if cv is not None and cv < RHYTHM_MAX_CV:
        counts["uniform_rhythm"] = round(stats.words / 100, 2)
    hits = [
        TellHit(id=i, category=BY_ID[i].category, count=n, points=round(BY_ID[i].weight * n, 2))
        for i, n in counts.items() if n
    ]
    points = sum(h.points for h in hits)
    density = points * 100 / max(stats.words, MIN_WORDS)
    score = round(100 * (1 - math.exp(-density / SCALE)), 1)
    hits.sort(key=lambda h: (-h.points, h.id))
    return TellScore(
        score=score, flagged=score >= FLAG_SCORE, points=round(points, 2), words=stats.words,
        rhythm_cv=None if cv is None else round(cv, 3), hits=hits[:max_hits],
    )


def score_text(text: str) -> TellScore:
    """Score one text (see the module docstring)."""
    return score_stats(analyse(text))


# ---- the before/after report ------------------------------------------------------------------------
class ChunkTells(BaseModel):
    index: int
    before: float
    after: float
    tells: list[str] = Field(default_factory=list)  # ids of the tells still in the rewrite


class TellReport(BaseModel):
    """AI-tell scores of a job's prose, before (the original) and after (the rewrite). Informational: it
    never makes verification fail."""

    version: str = VERSION
    flag_score: float = FLAG_SCORE
    before: TellScore
    after: TellScore
    chunks_scored: int
    chunks_flagged_before: int
    chunks_flagged_after: int
    worst_chunks: list[ChunkTells] = Field(default_factory=list)  # highest score after, first


def tell_report(
    originals: Sequence[str], rewrittens: Sequence[str], indices: Iterable[int], max_chunks: int = 20
) -> TellReport:
    """Score the chunks at ``indices`` (the prose) before and after, and their document as a whole."""
    before, after = TellStats(), TellStats()
    rows: list[tuple[int, TellScore, TellScore]] = []
    for i in indices:
        a, b = analyse(originals[i]), analyse(rewrittens[i])
        rows.append((i, score_stats(a, 0), score_stats(b)))
        before += a
        after += b
    worst = sorted(rows, key=lambda r: (-r[2].score, r[0]))[:max_chunks]
    return TellReport(
        before=score_stats(before),
        after=score_stats(after),
        chunks_scored=len(rows),
        chunks_flagged_before=sum(1 for _, a, _ in rows if a.flagged),
        chunks_flagged_after=sum(1 for _, _, b in rows if b.flagged),
        worst_chunks=[
            ChunkTells(index=i, before=a.score, after=b.score, tells=[h.id for h in b.hits])
            for i, a, b in worst if b.score > 0
        ],
    )


def phrases_to_avoid(categories: Mapping[str, bool] | None = None) -> list[str]:
    """The catalogue's phrases as the prompts name them, in catalogue order."""
    wanted = categories or {}
    return [t.avoid for t in CATALOGUE if t.avoid and wanted.get(t.category, True)]


def catalogue_markdown() -> str:
    """The catalogue as the markdown table of docs/ai-tells.md (``humanizer tells --catalogue``)."""
    rows = ["| id | category | weight | counted | what it is | matched by |", "|---|---|---|---|---|---|"]
    for t in CATALOGUE:
        counted = "per 100 words" if t.id == "uniform_rhythm" else f"≤ {t.max_count} per paragraph"
        if t.pattern is None:
            how = "measured"
        else:
            how = ("at a sentence start: " if t.start else "") + "`" + t.pattern.replace("|", "\\|") + "`"
        what = t.explanation.replace("|", "\\|")
        rows.append(f"| `{t.id}` | {t.category} | {t.weight:g} | {counted} | {what} | {how} |")
    return "\n".join(rows) + "\n"


def report_note(report: object) -> str:
    """``"; AI-tell score 46.6 → 15.1"`` from a stored verification report (a dict), or ``""`` — for
    one-line status messages (e.g. a HumanizeJob's)."""
    tells = report.get("tells") if isinstance(report, dict) else None
    try:
        before, after = float(tells["before"]["score"]), float(tells["after"]["score"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return ""
    return f"; AI-tell score {before:.1f} → {after:.1f}"
