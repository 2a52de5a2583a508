"""Truncated replies: max_tokens sized per chunk, one larger retry, then a split, never a cut-off rewrite."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from humanizer.chunking import count_tokens
from humanizer.chunking.sentences import split_in_two
from humanizer.config import Settings
from humanizer.providers import RewriteRequest, RewriteResult
from humanizer.providers.sizing import MIN_MAX_TOKENS, retry_max_tokens, size_max_tokens
from humanizer.worker import pipeline

pytestmark = pytest.mark.unit


# ---- sizing -------------------------------------------------------------------------------------
def test_max_tokens_follows_the_chunk() -> None:
    assert size_max_tokens(400, cap=1024) == 664  # 1.5 x 400 + 64
    assert size_max_tokens(100, cap=1024) == 214
    assert size_max_tokens(3, cap=1024) == 69
    assert size_max_tokens(3, cap=1024, margin=0) == MIN_MAX_TOKENS  # a short chunk still has room for a sentence
    assert size_max_tokens(2000, cap=1024) == 1024  # OPENAI_MAX_TOKENS stays the upper bound
    assert size_max_tokens(400, cap=50) == 50  # a job's own max_tokens likewise
    assert size_max_tokens(400, cap=1024, ratio=0) == 1024  # ratio 0: the old fixed limit
    assert size_max_tokens(400, cap=4096, ratio=2.0, margin=0) == 800


@given(tokens=st.integers(0, 50_000), cap=st.integers(1, 128_000), ratio=st.floats(0, 20),
       margin=st.integers(0, 999))
def test_max_tokens_bounds(tokens: int, cap: int, ratio: float, margin: int) -> None:
    n = size_max_tokens(tokens, cap, ratio, margin)
    assert 1 <= n <= cap
    if ratio > 0 and cap >= MIN_MAX_TOKENS:
        assert n >= min(cap, tokens * ratio)  # room for the whole rewrite unless the cap forbids it


def test_retry_asks_for_more_under_the_cap() -> None:
    first = size_max_tokens(400, cap=4096)
    assert retry_max_tokens(400, 4096, first) == max(2 * first, 3 * 400 + 256) == 1456
    assert retry_max_tokens(400, 1024, first) == 1024
    assert retry_max_tokens(400, 1024, 1024) is None  # the first call already had the cap: no room to retry
    assert retry_max_tokens(10, 4096, 64) == 286


def test_settings_defaults() -> None:
    s = Settings()
    assert (s.max_tokens_ratio, s.max_tokens_margin, s.openai_max_tokens) == (1.5, 64, 1024)
    assert Settings(HUMANIZER_MAX_TOKENS_RATIO="0").max_tokens_ratio == 0.0  # type: ignore[call-arg]


# ---- splitting ----------------------------------------------------------------------------------
def test_split_in_two_prefers_paragraphs_then_sentences() -> None:
    text = "One. Two three.\n\nFour five six.\n\nSeven eight nine ten, and more words here."
    left, gap, right = split_in_two(text) or ("", "", "")
    assert left + gap + right == text and gap == "\n\n" and right.startswith("Seven")
    text = "First sentence is here. Second one is here too. Third and last."
    left, gap, right = split_in_two(text) or ("", "", "")
    assert (left, gap, right) == ("First sentence is here.", " ", "Second one is here too. Third and last.")
    assert split_in_two("Only one sentence, Dr. Smith said, no more.") is None
    assert split_in_two("   ") is None


@given(st.lists(st.sampled_from(["Alpha beta.", "Gamma?", "Delta ⟦P1⟧ eps!", "\n\n", " ", "e.g. x"]), max_size=12))
def test_split_in_two_loses_nothing(parts: list[str]) -> None:
    text = "".join(parts)
    cut = split_in_two(text)
    if cut is not None:
        left, gap, right = cut
        assert left + gap + right == text and left.strip() and right.strip() and not gap.strip()


# ---- the worker's retry and split (a scripted provider; no Redis) ------------------------------
@dataclass
class Scripted:
    """Replies with the text itself, cut off (finish_reason length) when it needs more than ``max_tokens``,
    where a text needs ``need(text)`` tokens."""

    need: Any
    name: str = "scripted"
    seen: list[tuple[str, int]] = field(default_factory=list)

    def rewrite(self, request: RewriteRequest) -> RewriteResult:
        raise NotImplementedError

    async def arewrite(self, request: RewriteRequest) -> RewriteResult:
        limit = request.max_tokens or 0
        self.seen.append((request.text, limit))
        cut = self.need(request.text) > limit
        text = request.text[: len(request.text) // 2] if cut else request.text.upper()
        return RewriteResult(text, 10, 5, "m", self.name, "length" if cut else "stop")


class Limiter:
    class limits:  # the shape of RateLimiter.limits
        enabled = False

    def reserve(self, tokens: int) -> float:
        return 0.0

    def settle(self, estimate: int, actual: int) -> None:
        pass


class Store:
    def __init__(self) -> None:
        self.prices: dict[str, tuple[float, float]] = {}


class Engine:
    def slot(self, job_id: str = "") -> contextlib.AbstractAsyncContextManager[Any]:
        return contextlib.nullcontext()


TEXT = "The first sentence is short. The second sentence is a little longer than that. A third one ends it."


def run(provider: Scripted, cap: int = 1024) -> tuple[str, str] | str:
    call = pipeline._Caller(Engine(), Store(), "job", provider, "scripted", "m", Limiter())  # type: ignore[arg-type]
    tokens = count_tokens(TEXT)
    request = RewriteRequest(text=TEXT, max_tokens=size_max_tokens(tokens, cap))
    try:
        result = asyncio.run(pipeline._complete_rewrite(call, request, tokens, cap))
    except pipeline._Truncated as exc:
        return f"truncated: {exc}"
    assert (call.tokens_in, call.tokens_out) == (10 * len(provider.seen), 5 * len(provider.seen))
    return result


def test_a_complete_reply_is_used_as_is() -> None:
    p = Scripted(need=lambda t: 1)
    assert run(p) == (TEXT.upper(), "first") and len(p.seen) == 1
    assert p.seen[0][1] == size_max_tokens(count_tokens(TEXT), 1024)


def test_a_truncated_reply_is_retried_with_a_larger_limit() -> None:
    first = size_max_tokens(count_tokens(TEXT), 1024)
    p = Scripted(need=lambda t: first + 1)
    assert run(p) == (TEXT.upper(), "retry")
    assert [m for _, m in p.seen] == [first, retry_max_tokens(count_tokens(TEXT), 1024, first)]


def test_then_the_chunk_is_split_and_the_halves_joined() -> None:
    p = Scripted(need=lambda t: 10_000 if t == TEXT else 1)
    text, how = run(p)
    assert how == "split" and text == TEXT.upper()  # both halves, joined with the original gap
    left, _, right = split_in_two(TEXT) or ("", "", "")
    assert len(p.seen) == 4 and sorted(t for t, _ in p.seen[2:]) == sorted([left, right])


def test_then_it_is_given_up_never_stored_cut_off() -> None:
    p = Scripted(need=lambda t: 10_000)
    outcome = run(p)
    assert isinstance(outcome, str) and outcome.startswith("truncated: ") and "split" in outcome
    assert "sentence is" not in outcome  # the reason, never the text
    assert len(p.seen) == 4


def test_no_retry_when_the_cap_was_already_asked_for() -> None:
    p = Scripted(need=lambda t: 10_000 if t == TEXT else 1)
    assert run(p, cap=40) == (TEXT.upper(), "split")
    assert [m for _, m in p.seen][:1] == [40] and len(p.seen) == 3  # no second call at the same limit
