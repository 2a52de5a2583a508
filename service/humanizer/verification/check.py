"""Verification of rewritten chunks and documents against their originals.

A chunk passes when every fact of the original (numbers, dates, URLs and e-mails, quoted strings,
capitalised names) is still present in the rewrite, the length ratio is within bounds, the content
overlap is not below the threshold and its protected-span placeholders came back intact.

Presence is deliberately lenient where a faithful paraphrase may differ from the original: a name
counts as present anywhere in the rewrite (also at a sentence start), "five" stands for 5, a negative
number may lose its sign ("a 3% decline" for "-3%"), a full date in the rewrite also provides its year,
month-and-day and day, and an ambiguous ``03/05/2024`` matches either reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field, model_validator

from humanizer.verification.facts import CATEGORIES, Analysis, FactLists, Facts, ambiguous_readings, analyse
from humanizer.verification.tells import TellReport, tell_report

MAX_VALUE_CHARS = 60
MAX_ERROR_CHARS = 200

_LABELS = {
    "numbers": "number",
    "dates": "date",
    "urls": "URL",
    "emails": "email",
    "quotes": "quote",
    "names": "name",
}


class VerificationOptions(BaseModel):
    """Thresholds and switches of the verification step."""

    min_length_ratio: float = Field(default=0.5, ge=0)
    max_length_ratio: float = Field(default=1.8, gt=0)
    check_numbers: bool = True
    check_dates: bool = True
    check_urls: bool = True  # URLs and e-mail addresses
    check_quotes: bool = True
    check_names: bool = True
    # Dice overlap of content-word stems; a cheap meaning-drift signal that fails only below this.
    min_content_overlap: float = Field(default=0.35, ge=0, le=1)
    # Small samples are noisy: the ratio and overlap checks apply only from these sizes on.
    min_chars_for_ratio: int = Field(default=20, ge=0)
    min_words_for_overlap: int = Field(default=8, ge=0)
    # Report numbers and dates the rewrite introduced (never in the original); fail on them if set.
    fail_on_added: bool = False
    max_issues_per_chunk: int = Field(default=20, ge=1)
    max_failed_details: int = Field(default=50, ge=0)
    # The AI-tell report (verification/tells.py) of the checked chunks, before and after; informational only.
    tells: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> VerificationOptions:
        if self.min_length_ratio > self.max_length_ratio:
            raise ValueError("min_length_ratio must not exceed max_length_ratio")
        return self

    def checks(self, category: str) -> bool:
        flag = {
            "numbers": self.check_numbers,
            "dates": self.check_dates,
            "urls": self.check_urls,
            "emails": self.check_urls,
            "quotes": self.check_quotes,
            "names": self.check_names,
        }
        return flag[category]


class FactDiff(FactLists):
    """Fact values per category (normalised; each value at most ~60 characters)."""

    def total(self) -> int:
        return sum(len(getattr(self, c)) for c in CATEGORIES)

    def counts(self) -> dict[str, int]:
        return {c: len(getattr(self, c)) for c in CATEGORIES}


class ChunkReport(BaseModel):
    """Result for one chunk (``index`` is ``None`` for the whole-document check)."""

    index: int | None
    passed: bool
    missing: FactDiff = Field(default_factory=FactDiff)
    added: FactDiff = Field(default_factory=FactDiff)
    length_ratio: float | None = None  # rewritten/original characters; None for an empty original
    content_overlap: float | None = None  # None when the original has no content words
    original_chars: int = 0
    rewritten_chars: int = 0
    placeholder_error: str | None = None
    kept_original: str | None = None  # why the chunk's original text was kept instead of a rewrite
    issues: list[str] = Field(default_factory=list)


class VerificationReport(BaseModel):
    """Result for a document: counts, the failed chunks in detail and a whole-document check."""

    passed: bool
    chunks_total: int
    chunks_checked: int
    chunks_skipped: int
    chunks_failed: int
    failed_indices: list[int] = Field(default_factory=list)
    failed_chunks: list[ChunkReport] = Field(default_factory=list)  # at most options.max_failed_details
    details_truncated: bool = False
    missing_totals: dict[str, int] = Field(default_factory=dict)  # category -> missing in all chunks
    document: ChunkReport | None = None  # None when no chunk was checked
    tells: TellReport | None = None  # AI-tell scores before/after (None when off or nothing was checked)
    # per target of the job's fallback chain, when it has one (humanizer.jobs.models.TargetFigures as JSON):
    # who rewrote how many chunks, at what tokens, cost, latency and errors
    targets: list[dict[str, Any]] | None = None
    options: VerificationOptions = Field(default_factory=VerificationOptions)


def clip(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` on one line and at most ``limit`` characters (an ellipsis marks a cut)."""
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def verify_chunk(
    index: int,
    original: str,
    rewritten: str,
    options: VerificationOptions | None = None,
    placeholder_error: str | None = None,
) -> ChunkReport:
    """Check one rewritten chunk against its original."""
    opts = options or VerificationOptions()
    return compare_analyses(index, analyse(original), analyse(rewritten), opts, placeholder_error)


def verify_document(
    originals: list[str],
    rewrittens: list[str],
    options: VerificationOptions | None = None,
    placeholder_errors: Mapping[int, str] | None = None,
    skip: Iterable[int] | None = None,
    kept_original: Mapping[int, str] | None = None,
) -> VerificationReport:
    """Check every chunk not in ``skip`` (passthrough chunks), then the joined checked chunks.

    A chunk listed in ``placeholder_errors`` or ``kept_original`` (index -> why its original text was kept,
    e.g. a reply truncated on every attempt) is checked and fails, even if it is also in ``skip``.
    """
    if len(originals) != len(rewrittens):
        raise ValueError(f"{len(originals)} originals but {len(rewrittens)} rewritten chunks")
    opts = options or VerificationOptions()
    errors = {int(k): v for k, v in (placeholder_errors or {}).items()}
    kept = {int(k): v for k, v in (kept_original or {}).items()}
    skipped = {int(i) for i in (skip or ())} - set(errors) - set(kept)
    failed: list[ChunkReport] = []
    totals = dict.fromkeys(CATEGORIES, 0)
    checked = 0
    orig_parts: list[Analysis] = []
    new_parts: list[Analysis] = []
    checked_indices: list[int] = []
    for i, (original, rewritten) in enumerate(zip(originals, rewrittens, strict=True)):
        if i in skipped:
            continue
        checked += 1
        checked_indices.append(i)
        a, b = analyse(original), analyse(rewritten)
        orig_parts.append(a)
        new_parts.append(b)
        chunk = compare_analyses(i, a, b, opts, errors.get(i), kept.get(i))
        for category, n in chunk.missing.counts().items():
            totals[category] += n
        if not chunk.passed:
            failed.append(chunk)

    document = None
    if orig_parts:
        document = compare_analyses(None, _merge(orig_parts), _merge(new_parts), opts, None)
    return VerificationReport(
        passed=not failed and (document is None or document.passed),
        chunks_total=len(originals),
        chunks_checked=checked,
        chunks_skipped=len(originals) - checked,
        chunks_failed=len(failed),
        failed_indices=[c.index for c in failed if c.index is not None],
        failed_chunks=failed[: opts.max_failed_details],
        details_truncated=len(failed) > opts.max_failed_details,
        missing_totals=totals,
        document=document,
        tells=tell_report(originals, rewrittens, checked_indices) if opts.tells and checked_indices else None,
        options=opts,
    )


def _merge(parts: list[Analysis]) -> Analysis:
    """The analysis of the joined chunks, from the chunks' analyses (no re-parsing)."""
    values: dict[str, set[str]] = {c: set() for c in CATEGORIES}
    surface: dict[str, dict[str, str]] = {c: {} for c in CATEGORIES}
    merged = Analysis(facts=Facts(), text="", ngrams=set(), stems=set(), chars=0)
    for p in parts:
        for c in CATEGORIES:
            values[c].update(p.facts.category(c))
            for v in p.facts.category(c):
                surface[c].setdefault(v, p.facts.surface(c, v))
        merged.ngrams |= p.ngrams
        merged.stems |= p.stems
        merged.number_evidence |= p.number_evidence
        merged.date_evidence |= p.date_evidence
    facts = Facts(**{c: sorted(values[c]) for c in CATEGORIES})
    facts._surface = surface
    merged.facts = facts
    merged.text = " ".join(p.text for p in parts)
    merged.chars = len(merged.text)
    return merged


def _present(category: str, value: str, rewrite: Analysis) -> bool:
    if category == "numbers":
        # A negative number may be rephrased as a fall: "-3.2%" -> "a 3.2% decline".
        return value in rewrite.number_evidence or (
            value.startswith("-") and value[1:] in rewrite.number_evidence
        )
    if category == "dates":
        # An ambiguous "03/05/2024" is present if either reading is.
        return value in rewrite.date_evidence or bool(ambiguous_readings(value) & rewrite.date_evidence)
    if category == "quotes":
        return value in rewrite.text
    if category == "names":
        return tuple(value.split(" ")) in rewrite.ngrams
    return value in rewrite.facts.category(category)


def compare_analyses(
    index: int | None,
    original: Analysis,
    rewrite: Analysis,
    opts: VerificationOptions,
    placeholder_error: str | None,
    kept_original: str | None = None,
) -> ChunkReport:
    """The report of one chunk (``index``; None for the whole document) from the analyses of its original
    and its rewrite; the second pass uses it too, to name what a rewrite dropped."""
    issues: list[str] = []  # placeholder, length and overlap issues first, then the missing facts
    fact_issues: list[str] = []
    failed = False
    if placeholder_error is not None:
        failed = True
        issues.append(f"protected-span placeholders altered: {clip(placeholder_error, MAX_ERROR_CHARS)}")
    if kept_original is not None:
        failed = True
        issues.append(f"original text kept: {clip(kept_original, MAX_ERROR_CHARS)}")

    missing: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for category in CATEGORIES:
        if not opts.checks(category):
            continue
        for value in original.facts.category(category):
            if not _present(category, value, rewrite):
                missing[category].append(clip(value))
                shown = clip(original.facts.surface(category, value))
                if category == "quotes":
                    shown = f"“{shown}”"
                fact_issues.append(f"{_LABELS[category]} {shown} missing")
                failed = True

    added: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for category in ("numbers", "dates"):
        if not opts.checks(category):
            continue
        evidence = original.number_evidence if category == "numbers" else original.date_evidence
        for value in rewrite.facts.category(category):
            if value not in evidence:
                added[category].append(clip(value))
                if opts.fail_on_added:
                    shown = clip(rewrite.facts.surface(category, value))
                    fact_issues.append(f"{_LABELS[category]} {shown} added")
                    failed = True

    ratio: float | None = None
    if original.chars:
        ratio = round(rewrite.chars / original.chars, 4)
    if original.chars and not rewrite.chars:
        issues.append("rewrite is empty")
        failed = True
    elif ratio is not None and original.chars >= opts.min_chars_for_ratio:
        if ratio < opts.min_length_ratio:
            issues.append(f"length ratio {ratio:.2f} below minimum {opts.min_length_ratio:.2f}")
            failed = True
        elif ratio > opts.max_length_ratio:
            issues.append(f"length ratio {ratio:.2f} above maximum {opts.max_length_ratio:.2f}")
            failed = True

    overlap: float | None = None
    if original.stems:
        common = len(original.stems & rewrite.stems)
        overlap = round(2 * common / (len(original.stems) + len(rewrite.stems)), 4)
        if len(original.stems) >= opts.min_words_for_overlap and overlap < opts.min_content_overlap:
            issues.append(f"content overlap {overlap:.2f} below minimum {opts.min_content_overlap:.2f}")
            failed = True

    issues += fact_issues
    if len(issues) > opts.max_issues_per_chunk:
        extra = len(issues) - opts.max_issues_per_chunk + 1
        issues = [*issues[: opts.max_issues_per_chunk - 1], f"… and {extra} more issues"]
    return ChunkReport(
        index=index,
        passed=not failed,
        missing=FactDiff(**missing),
        added=FactDiff(**added),
        length_ratio=ratio,
        content_overlap=overlap,
        original_chars=original.chars,
        rewritten_chars=rewrite.chars,
        placeholder_error=clip(placeholder_error, MAX_ERROR_CHARS) if placeholder_error is not None else None,
        kept_original=clip(kept_original, MAX_ERROR_CHARS) if kept_original is not None else None,
        issues=issues,
    )
