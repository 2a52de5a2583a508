"""The targeted second pass: one more provider call for a chunk whose rewrite can still be fixed.

When a chunk's rewrite has come back (whole, placeholders intact), ``improve`` looks at it as the job's
verification will (the checks of ``verification.check.verify_chunk``, default options) and scores it for AI tells
(``verification.tells``). It asks the model once more when

- a fact of the original is missing from the rewrite: a dropped or changed number, date, link, e-mail
  address, quotation or name (*fixable*: the prompt names each one). Length and content-overlap failures
  are not sent back: "write it differently" is no instruction a model can check itself against; or
- the rewrite's AI-tell score is at least the threshold (``HUMANIZER_SECOND_PASS_TELL_THRESHOLD``, default
  35, the score from which a text reads machine-written); the prompt names the tells found.

The second call sends the same system message and, in the user message, the earlier rewrite
(``<previous_rewrite>``), the list of exactly those fixes (``<fix>``) and the original text again
(``<text>``, the last section; ``providers/prompts.revision_sections``). Of the two rewrites the better by
(verification passed, lower AI-tell score) is kept, the first on a tie. A second reply that fails, is cut
off at max_tokens or alters placeholders leaves the first rewrite in place.

At most one extra call per chunk and job: a Redis hash (``<job>:second_pass``) records the chunks that had
theirs, so a redelivered or retried batch never asks twice. A budget stops it: at most
``HUMANIZER_SECOND_PASS_MAX_CHUNK_RATIO`` (default 0.25) of the job's model chunks, rounded up, and at most
``HUMANIZER_SECOND_PASS_MAX_TOKENS`` second-pass tokens per job (0: no token cap). Each call first reserves
its prompt's tokens (counted) plus as many for the reply as the chunk has, and is settled to the provider's
count afterwards, so the cap is passed by at most what the calls in flight spend beyond their reservation.
The job record counts ``second_pass_calls``, ``second_pass_kept`` (the second rewrite won),
``second_pass_over_budget``, ``second_pass_tokens_in`` and ``second_pass_tokens_out`` (also part of the
job's tokens); ``humanizer_second_pass_total{reason,outcome}`` and
``humanizer_second_pass_tokens_total{direction}`` count them for Prometheus.

``call`` is opaque here: the worker (``pipeline._SecondPassCall``) sends it through the job's fallback chain,
from the target that served the first call, with that target's breaker, figures and metrics.

On by default for model providers (``HUMANIZER_SECOND_PASS=auto``: ``openai``), off for ``offline`` and
``echo``, which answer the same text with the same rewrite; a job's ``second_pass`` option wins.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from humanizer import metrics
from humanizer.chunking import PlaceholderError, count_tokens, unmask
from humanizer.chunking.protect import ProtectedSpan
from humanizer.config import Settings, get_settings
from humanizer.jobs.store import JobStore
from humanizer.logging import get_logger
from humanizer.providers import RewriteRequest, RewriteResult
from humanizer.providers.prompts import build_system_prompt, build_user_message
from humanizer.providers.sizing import retry_max_tokens
from humanizer.verification.check import VerificationOptions, clip, compare_analyses
from humanizer.verification.facts import CATEGORIES, analyse
from humanizer.verification.tells import BY_ID, FLAG_SCORE, TellHit, score_text, tell_regex_source

log = get_logger("humanizer.worker.second_pass")

#: Providers that never get a second pass under ``auto``: no model behind them.
MODEL_FREE = frozenset({"offline", "echo"})
#: The verification categories a second pass can fix by naming what went missing.
FIXABLE = CATEGORIES
MAX_NAMED = 8  # values named per category, tells named per prompt

Call = Callable[[RewriteRequest, int], Awaitable[RewriteResult]]


# ---- the decision (pure) --------------------------------------------------------------------------
@dataclass(frozen=True)
class Assessment:
    """A rewrite as verification and the tell detector see it."""

    passed: bool  # the chunk's verification passed
    tell_score: float
    missing: dict[str, list[str]] = field(default_factory=dict)  # category -> values as the original writes them
    tells: tuple[TellHit, ...] = ()  # most points first
    found: dict[str, list[str]] = field(default_factory=dict)  # phrase tell id -> the words as the rewrite has them

    @property
    def key(self) -> tuple[bool, float]:
        """Larger is better: verification passed first, then a lower AI-tell score."""
        return (self.passed, -self.tell_score)


def assess(original: str, rewritten: str, options: VerificationOptions | None = None) -> Assessment:
    """``verify_chunk``'s verdict (each text analysed once) and the rewrite's AI-tell score: about 3 ms of CPU
    for a chunk of 180 words (measured on samples/remote-work-report.md)."""
    source = analyse(original)
    report = compare_analyses(0, source, analyse(rewritten), options or VerificationOptions(), None)
    surface: dict[str, dict[str, str]] = {}
    facts = source.facts
    for category in CATEGORIES:
        surface[category] = {clip(v): facts.surface(category, v) for v in facts.category(category)}
    missing = {
        c: [surface[c].get(v, v) for v in getattr(report.missing, c)]
        for c in FIXABLE if getattr(report.missing, c)
    }
    tells = score_text(rewritten)
    found = {h.id: _matches(h.id, rewritten) for h in tells.hits if BY_ID[h.id].pattern is not None}
    return Assessment(report.passed, tells.score, missing, tuple(tells.hits), found)


@functools.cache
def _pattern(tell_id: str) -> re.Pattern[str]:
    return re.compile(tell_regex_source(BY_ID[tell_id].pattern or ""), re.IGNORECASE)


def _matches(tell_id: str, text: str, limit: int = 3) -> list[str]:
    """The distinct phrases of ``text`` a phrase tell matched (as written, lower-cased), the first ``limit``."""
    out: list[str] = []
    for m in _pattern(tell_id).finditer(text):
        phrase = " ".join(m.group(0).split()).lower()
        if phrase not in out:
            out.append(phrase)
        if len(out) == limit:
            break
    return out


def reasons(a: Assessment, threshold: float = FLAG_SCORE) -> list[str]:
    """Why a rewrite deserves a second pass: ``facts`` (something fixable went missing), ``tells`` (it
    still reads machine-written); empty: it does not."""
    out = []
    if any(a.missing.values()):
        out.append("facts")
    if threshold < 100 and a.tell_score >= threshold:
        out.append("tells")
    return out


def reason_label(found: Sequence[str]) -> str:
    return "_and_".join(found) if found else "none"


def better(first: Assessment, second: Assessment) -> bool:
    """Whether the second rewrite is kept: strictly better by (verification passed, AI-tell score)."""
    return second.key > first.key


_FACT_FIXES = {
    "numbers": "Your rewrite dropped or changed these numbers; put each back exactly as the text writes it: {}.",
    "dates": "Your rewrite dropped or changed these dates; put each back exactly as the text writes it: {}.",
    "urls": "Your rewrite dropped or changed these links; copy each character for character: {}.",
    "emails": "Your rewrite dropped or changed these e-mail addresses; copy each character for character: {}.",
    "quotes": "Your rewrite changed these quotations; quote each word for word, in quotation marks: {}.",
    "names": "Your rewrite dropped or changed these names; keep each as the text writes it: {}.",
}

# measured tells: what to do instead (phrase tells are named by the catalogue's ``avoid``)
_MEASURED_FIXES = {
    "uniform_rhythm": "sentences all of about one length (mix short sentences with longer ones)",
    "rule_of_three": "lists of exactly three where the text does not need three",
    "em_dash": "a dash (—) in sentence after sentence (use commas, full stops or brackets)",
    "signpost_stack": "sentence after sentence opening with a connector (however, moreover, additionally …)",
    "hedge_stack": "stacked hedges (potentially, arguably, perhaps …) beyond what the text claims",
}


def fixes(a: Assessment, threshold: float = FLAG_SCORE) -> list[str]:
    """The prompt's list of exactly what to fix (``providers/prompts.revision_sections`` shows it)."""
    out: list[str] = []
    for category in FIXABLE:
        values = a.missing.get(category) or []
        if values:
            named = values[:MAX_NAMED]
            shown = ", ".join(f"“{v}”" if category == "quotes" else f'"{v}"' for v in named)
            if len(values) > len(named):
                shown += f" and {len(values) - len(named)} more"
            out.append(_FACT_FIXES[category].format(shown))
    if "tells" in reasons(a, threshold):
        named_tells: list[str] = []
        for hit in a.tells[:MAX_NAMED]:
            tell = BY_ID[hit.id]
            if hit.id in _MEASURED_FIXES:
                named_tells.append(_MEASURED_FIXES[hit.id])
            else:
                words = a.found.get(hit.id) or ([tell.avoid] if tell.avoid else [])
                what = ", ".join(f'"{clip(w, 80)}"' for w in words) or tell.explanation.rstrip(".").lower()
                times = f" (×{hit.count:g})" if hit.count > 1 else ""
                named_tells.append(what + times)
        out.append(
            f"It still reads machine-written (AI-tell score {a.tell_score:.0f} of 100; {threshold:g} or more reads "
            "machine-written). Leave out: " + "; ".join(named_tells) + "."
        )
    return out


# ---- the policy ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    enabled: bool
    tell_threshold: float = FLAG_SCORE
    max_calls: int | None = None  # second passes per job (None: no cap)
    max_tokens: int = 0  # second-pass tokens per job (0: no cap)


def enabled_for(provider: str, job_option: str | None, setting: str) -> bool:
    """A job's own ``second_pass`` (``"1"``/``"0"``) wins; else ``on``/``off``, or ``auto``: model providers."""
    if job_option in ("1", "0"):
        return job_option == "1"
    if setting in ("on", "off"):
        return setting == "on"
    return provider not in MODEL_FREE


def policy(meta: Mapping[str, str], settings: Settings) -> Policy:
    provider = meta.get("provider") or settings.provider
    if not enabled_for(provider, meta.get("second_pass") or None, settings.second_pass):
        return Policy(False)
    chunks = int(meta.get("model_chunks") or meta.get("total") or 0)
    return Policy(
        True,
        tell_threshold=settings.second_pass_tell_threshold,
        max_calls=math.ceil(settings.second_pass_max_chunk_ratio * chunks - 1e-9),
        max_tokens=settings.second_pass_max_tokens,
    )


@functools.cache
def _system_tokens(style: str, custom_prompt: str | None) -> int:
    try:
        return count_tokens(build_system_prompt(style, custom_prompt))
    except ValueError:
        return count_tokens(build_system_prompt(None, custom_prompt))


def estimate_tokens(request: RewriteRequest, tokens: int) -> int:
    """Tokens a second pass is expected to cost: its prompt as sent (system and user message, counted),
    and a reply as long as the text (``tokens``)."""
    style = str(getattr(request.style, "value", request.style) or "")
    user = build_user_message(request.text, request.context_before, request.context_after, request.previous,
                              request.fixes)
    return _system_tokens(style, request.custom_prompt) + count_tokens(user) + tokens


# ---- the budget, in Redis --------------------------------------------------------------------------
# KEYS: job, second-pass hash ; ARGV: index, max calls (-1: none), max tokens (0: none), token estimate.
# 1: go; -2: this chunk had its second pass; 0/-1: over the call/token budget (counted).
_RESERVE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -2 end
local max_calls = tonumber(ARGV[2])
if max_calls >= 0 and tonumber(redis.call('HGET', KEYS[1], 'second_pass_calls') or '0') >= max_calls then
  redis.call('HINCRBY', KEYS[1], 'second_pass_over_budget', 1)
  return 0
end
local max_tokens = tonumber(ARGV[3])
local used = tonumber(redis.call('HGET', KEYS[1], 'second_pass_tokens') or '0')
if max_tokens > 0 and used + tonumber(ARGV[4]) > max_tokens then
  redis.call('HINCRBY', KEYS[1], 'second_pass_over_budget', 1)
  return -1
end
redis.call('HSET', KEYS[2], ARGV[1], 'called')
redis.call('HINCRBY', KEYS[1], 'second_pass_calls', 1)
redis.call('HINCRBY', KEYS[1], 'second_pass_tokens', ARGV[4])
return 1
"""


def reserve(store: JobStore, job_id: str, index: int, pol: Policy, estimate: int) -> int:
    """Claim this chunk's one second pass within the job's budget (see ``_RESERVE`` for the answers)."""
    args = [index, -1 if pol.max_calls is None else pol.max_calls, pol.max_tokens, estimate]
    return int(store.eval_job_script(_RESERVE, job_id, ["", "second_pass"], args))


def settle(store: JobStore, job_id: str, index: int, estimate: int, result: RewriteResult | None,
           outcome: str) -> None:
    spent_in, spent_out = (result.input_tokens, result.output_tokens) if result else (0, 0)
    counts = {"second_pass_tokens": spent_in + spent_out - estimate, "second_pass_tokens_in": spent_in,
              "second_pass_tokens_out": spent_out}
    if outcome == "kept_second":
        counts["second_pass_kept"] = 1
    store.incr_fields(job_id, counts, {"second_pass": {str(index): outcome}})


# ---- the one entry point ------------------------------------------------------------------------
@dataclass(frozen=True)
class FirstRewrite:
    """A chunk's rewrite as the first call(s) gave it, before it is stored."""

    index: int
    original: str  # the chunk's text: what verification compares with
    request: RewriteRequest  # the first call's request (masked text)
    tokens: int  # tokens of the masked text
    masked_output: str  # the reply, placeholders and all
    output: str  # the reply unmasked: what is stored unless the second pass does better
    spans: tuple[ProtectedSpan, ...]
    how: str  # first | retry | split (``pipeline._complete_rewrite``)
    cap: int  # the job's max_tokens cap


async def improve(call: Call, store: JobStore, job_id: str, meta: Mapping[str, str], first: FirstRewrite,
                  settings: Settings | None = None) -> str:
    """The text to store for this chunk: ``first.output``, or a second rewrite that is better."""
    s = settings or get_settings()
    pol = policy(meta, s)
    if not pol.enabled or first.how == "split":  # a reply of the whole chunk did not fit: not again
        return first.output
    before = assess(first.original, first.output)
    why = reasons(before, pol.tell_threshold)
    if not why:
        return first.output
    label = reason_label(why)
    max_tokens = first.request.max_tokens
    if first.how == "retry":  # the first reply needed the larger limit
        max_tokens = retry_max_tokens(first.tokens, first.cap, first.request.max_tokens or first.cap) or first.cap
    request = replace(first.request, previous=first.masked_output, fixes=tuple(fixes(before, pol.tell_threshold)),
                      max_tokens=max_tokens)
    estimate = estimate_tokens(request, first.tokens)
    granted = reserve(store, job_id, first.index, pol, estimate)
    if granted != 1:
        if granted != -2:
            metrics.count_second_pass(label, "over_budget")
            log.info("chunk.second_pass", job_id=job_id, chunk_id=first.index, reasons=label, outcome="over_budget")
        return first.output
    started = time.monotonic()
    result: RewriteResult | None = None
    chosen, outcome, after = first.output, "kept_first", None
    try:
        result = await call(request, first.tokens)
        if result.truncated:
            outcome = "failed"
        else:
            second = unmask(result.text, first.spans)
            after = assess(first.original, second)
            if better(before, after):
                chosen, outcome = second, "kept_second"
    except PlaceholderError:
        outcome = "failed"
    except Exception as exc:  # the first rewrite is good: any failure of this extra call keeps it
        outcome = "failed"
        log.warning("chunk.second_pass_failed", job_id=job_id, chunk_id=first.index, error=type(exc).__name__)
    settle(store, job_id, first.index, estimate, result, outcome)
    metrics.count_second_pass(label, outcome)
    if result is not None:
        metrics.count_second_pass_tokens(result.input_tokens, result.output_tokens)
    log.info(
        "chunk.second_pass", job_id=job_id, chunk_id=first.index, reasons=label, outcome=outcome,
        seconds=round(time.monotonic() - started, 3), passed_before=before.passed, tells_before=before.tell_score,
        passed_after=None if after is None else after.passed, tells_after=None if after is None else after.tell_score,
    )
    return chosen
