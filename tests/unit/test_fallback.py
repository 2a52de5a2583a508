"""The fallback chain's pure logic: the circuit breaker's state machine, which errors fall over, the
targets' configuration and a job's chain as submission resolves it (Redis and workers: the integration
tier, tests/integration/test_fallback.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from humanizer.config import Settings
from humanizer.jobs.models import JobRequest
from humanizer.jobs.submit import SubmissionError, resolve_chain
from humanizer.providers.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerConfig,
    BreakerState,
    after_failure,
    after_success,
    decide,
    seconds_until_probe,
)
from humanizer.providers.errors import ErrorKind, ProviderError, _from_status
from humanizer.providers.targets import Target, counts_for_breaker, falls_over, parse_also_on

pytestmark = pytest.mark.unit

CFG = BreakerConfig(failures=3, cooldown=10.0, probe_lease=5.0)


# ---- the breaker's state machine -------------------------------------------------------------------------
def test_a_run_of_failures_opens_it_and_a_success_in_between_resets_the_run() -> None:
    st = BreakerState()
    st = after_failure(st, 100.0, CFG)
    st = after_failure(st, 101.0, CFG)
    assert (st.state, st.failures) == (CLOSED, 2)
    assert decide(st, 101.0, CFG) == (True, st), "closed: calls go through"
    st = after_success(st)
    assert st == BreakerState(), "a success resets the run"
    for t in (102.0, 103.0):
        st = after_failure(st, t, CFG)
    assert st.state == CLOSED
    st = after_failure(st, 104.0, CFG)
    assert (st.state, st.failures, st.opened_at) == (OPEN, 3, 104.0)


def test_open_skips_until_the_cooldown_then_one_probe_at_a_time() -> None:
    st = BreakerState(OPEN, 3, opened_at=100.0)
    assert decide(st, 109.9, CFG) == (False, st)
    assert seconds_until_probe(st, 105.0, CFG) == pytest.approx(5.0)
    allowed, probing = decide(st, 110.0, CFG)
    assert allowed and probing.state == HALF_OPEN and probing.probe_until == pytest.approx(115.0)
    # while the probe is out, everyone else still skips the target
    assert decide(probing, 112.0, CFG) == (False, probing)
    assert seconds_until_probe(probing, 112.0, CFG) == pytest.approx(3.0)
    # a probe that never reports (its worker died) gives way to another one once its lease ran out
    again, renewed = decide(probing, 115.0, CFG)
    assert again and renewed.state == HALF_OPEN and renewed.probe_until == pytest.approx(120.0)


def test_the_probe_closes_it_on_success_and_reopens_it_on_failure() -> None:
    probing = BreakerState(HALF_OPEN, 3, opened_at=100.0, probe_until=115.0)
    assert after_success(probing) == BreakerState()
    reopened = after_failure(probing, 111.0, CFG)
    assert (reopened.state, reopened.opened_at) == (OPEN, 111.0), "a new cool-down from the probe's failure"
    assert decide(reopened, 120.0, CFG)[0] is False and decide(reopened, 121.0, CFG)[0] is True


def test_late_failures_while_open_do_not_extend_the_cooldown() -> None:
    st = BreakerState(OPEN, 3, opened_at=100.0)
    assert after_failure(st, 108.0, CFG) == st


def test_failures_zero_never_opens() -> None:
    st = BreakerState()
    for t in range(100):
        st = after_failure(st, float(t), BreakerConfig(failures=0))
    assert st.state == CLOSED


def test_state_round_trips_through_the_redis_hash() -> None:
    st = BreakerState(HALF_OPEN, 4, 1700000000.25, 1700000005.5)
    assert BreakerState.from_hash(st.to_hash()) == st
    assert BreakerState.from_hash({}) == BreakerState()
    assert BreakerState.from_hash({"state": "bogus"}).state == CLOSED


# ---- which errors fall over ------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "code", "kind", "expected"), [
    (429, "rate_limit_exceeded", ErrorKind.RATE_LIMITED, "after_retries"),
    (500, None, ErrorKind.SERVER_ERROR, "after_retries"),
    (503, None, ErrorKind.SERVER_ERROR, "after_retries"),
    (408, None, ErrorKind.TIMEOUT, "after_retries"),
    (400, "context_length_exceeded", ErrorKind.CONTEXT_LENGTH, "at_once"),
    (401, "invalid_api_key", ErrorKind.AUTH, None),
    (403, None, ErrorKind.PERMISSION, None),
    (429, "insufficient_quota", ErrorKind.QUOTA_EXHAUSTED, None),
    (400, "content_filter", ErrorKind.CONTENT_POLICY, None),
    (404, "model_not_found", ErrorKind.NOT_FOUND, None),
    (400, None, ErrorKind.BAD_REQUEST, None),
    (422, None, ErrorKind.UNPROCESSABLE, None),
])
def test_fall_over_classification(status: int, code: str | None, kind: ErrorKind, expected: str | None) -> None:
    err = _from_status(status, code, None, {})
    assert err.kind == kind
    assert falls_over(err) == expected


def test_timeouts_and_connection_errors_fall_over_after_retries() -> None:
    assert falls_over(ProviderError.timeout()) == "after_retries"
    assert falls_over(ProviderError(ErrorKind.CONNECTION)) == "after_retries"
    assert falls_over(ProviderError.invalid_response()) == "after_retries"


def test_account_and_text_errors_fall_over_only_when_configured_and_then_at_once() -> None:
    auth = ProviderError.auth()
    quota = ProviderError(ErrorKind.QUOTA_EXHAUSTED)
    policy = ProviderError(ErrorKind.CONTENT_POLICY)
    also = parse_also_on("auth, quota_exhausted")
    assert also == ("auth", "quota_exhausted")
    assert falls_over(auth, also) == "at_once" and falls_over(quota, also) == "at_once"
    assert falls_over(policy, also) is None, "content policy was not opted in"
    assert falls_over(ProviderError.bad_request(), ("auth",)) is None
    with pytest.raises(ValueError, match="cannot fall over on 'bad_request'"):
        parse_also_on(["bad_request"])


def test_what_counts_toward_the_breaker() -> None:
    assert counts_for_breaker(ProviderError(ErrorKind.SERVER_ERROR))
    assert counts_for_breaker(ProviderError.timeout())
    assert counts_for_breaker(ProviderError(ErrorKind.CONNECTION))
    assert not counts_for_breaker(ProviderError(ErrorKind.RATE_LIMITED)), "429 says slow down, not dead"
    assert not counts_for_breaker(ProviderError(ErrorKind.CONTEXT_LENGTH)), "a property of one text"
    assert not counts_for_breaker(ProviderError.auth())
    assert counts_for_breaker(ProviderError.auth(), ("auth",)), "an opted-in auth failure: the target is unusable"


# ---- configuration ---------------------------------------------------------------------------------------
def test_targets_from_the_environment_json() -> None:
    raw = json.dumps([
        {"name": "cheap", "model": "gpt-4.1-nano", "api_key_env": "CHEAP_KEY", "rpm": 100, "price_in": 0.1,
         "price_out": 0.4},
        {"name": "local_vllm", "base_url": "http://vllm:8000/v1", "model": "llama", "timeout": 20},
    ])
    s = Settings(HUMANIZER_FALLBACK_TARGETS=raw, HUMANIZER_FALLBACK_ALSO_ON="quota_exhausted,auth")
    assert [t.name for t in s.fallback_targets] == ["cheap", "local_vllm"]
    assert s.fallback_target("cheap") == Target(name="cheap", model="gpt-4.1-nano", api_key_env="CHEAP_KEY", rpm=100,
                                                price_in=0.1, price_out=0.4)
    assert s.fallback_also_on_kinds == ("auth", "quota_exhausted")
    assert "'cheap'" in repr(s.fallback_targets)
    assert "vllm:8000" not in repr(s.fallback_targets), "URLs stay out of reprs (and so of logs)"


@pytest.mark.parametrize(("targets", "mentions"), [
    ([{"name": "primary"}], "primary"),
    ([{"name": "Backup"}], "pattern"),
    ([{"name": "b-1"}], "pattern"),
    ([{"name": "b", "api_key": "sk-inline"}], "extra"),
    ([{"name": "b", "api_key_env": "not a name"}], "pattern"),
    ([{"name": "b"}, {"name": "b"}], "twice"),
    ([{"name": "b", "base_url": "vllm:8000"}], "pattern"),
])
def test_bad_targets_are_refused(targets: list[dict[str, object]], mentions: str) -> None:
    with pytest.raises(ValidationError, match=mentions):
        Settings(HUMANIZER_FALLBACK_TARGETS=json.dumps(targets))


def test_the_chain_a_job_gets() -> None:
    s = Settings(HUMANIZER_FALLBACK_TARGETS=json.dumps([
        {"name": "cheap", "model": "gpt-4.1-nano", "price_in": 0.1, "price_out": 0.4},
        {"name": "local", "base_url": "http://vllm:8000/v1", "model": "llama"},
    ]), HUMANIZER_FALLBACK_ALSO_ON="auth")
    chain, also = resolve_chain(JobRequest(text="x"), s, "openai", "gpt-4o")
    assert chain == [
        {"name": "primary", "provider": "openai", "model": "gpt-4o"},
        {"name": "cheap", "provider": "openai", "model": "gpt-4.1-nano", "price": [0.1, 0.4]},
        {"name": "local", "provider": "openai", "model": "llama"},
    ]
    assert also == ("auth",)
    chain, also = resolve_chain(JobRequest(text="x", fallback=["local"], fallback_also_on=[]), s, "openai", "m")
    assert [c["name"] for c in chain] == ["primary", "local"] and also == ()
    chain, _ = resolve_chain(JobRequest(text="x", fallback=[]), s, "openai", "m")
    assert [c["name"] for c in chain] == ["primary"]
    with pytest.raises(SubmissionError, match="unknown fallback target 'nope'"):
        resolve_chain(JobRequest(text="x", fallback=["nope"]), s, "openai", "m")
    with pytest.raises(SubmissionError, match="twice"):
        resolve_chain(JobRequest(text="x", fallback=["local", "local"]), s, "openai", "m")
    with pytest.raises(SubmissionError, match="cannot fall over"):
        resolve_chain(JobRequest(text="x", fallback_also_on=["timeout"]), s, "openai", "m")
    # without configured targets a job has no chain
    chain, _ = resolve_chain(JobRequest(text="x"), Settings(), "offline", "")
    assert [c["name"] for c in chain] == ["primary"]


# ---- the HumanizeJob side --------------------------------------------------------------------------------
def test_humanizejob_spec_and_status() -> None:
    from humanizer.jobs.models import JobView, Progress, TargetFigures
    from humanizer_operator.handlers.jobs import build_request
    from humanizer_operator.status import mirrored

    req = build_request({"model": {"provider": "openai", "fallback": ["cheap", "local"],
                                   "fallbackAlsoOn": ["auth"]}}, "text", "hj-1")
    assert (req.fallback, req.fallback_also_on) == (["cheap", "local"], ["auth"])
    assert build_request({"model": {}}, "text", "hj-2").fallback is None, "unset: the configured targets"
    view = JobView(
        job_id="x", status="SUCCESS", phase="done", progress=Progress(completed=2, failed=0, skipped=0, total=2,
                                                                      percentage=100.0),
        provider="openai", model="m", style="neutral", retries=0, tokens_in=30, tokens_out=20, created_at=0.0,
        started_at=None, finished_at=None, error=None, dead_letters=0,
        targets=[TargetFigures(name="primary", provider="openai", model="m", calls=3, errors={"timeout": 3}),
                 TargetFigures(name="cheap", provider="openai", model="n", chunks=2, calls=2, tokens_in=30,
                               tokens_out=20, cost_usd=0.0000123)],
    )
    status = mirrored(view)["targets"]
    assert status[0]["errors"] == 3 and status[1]["chunks"] == 2 and status[1]["costUSD"] == "0.000012"
    assert "targets" not in mirrored(view.model_copy(update={"targets": None})), "no chain, no status.targets"


def test_second_pass_cost_is_priced_per_target() -> None:
    """A job's second-pass cost: what a fallback target answered at its prices, the rest at the primary's."""
    from humanizer.jobs.models import TargetFigures
    from humanizer.jobs.store import _second_pass

    meta = {"model": "m", "second_pass_calls": "2", "second_pass_kept": "1", "second_pass_tokens_in": "3000",
            "second_pass_tokens_out": "300"}
    prices = {"m": (10.0, 20.0)}
    backup = TargetFigures(name="cheap", provider="openai", model="n", second_passes=1, second_pass_tokens_in=1000,
                           second_pass_tokens_out=100, second_pass_cost_usd=0.0012)
    sp = _second_pass(meta, prices, [TargetFigures(name="primary", provider="openai", model="m"), backup])
    assert sp is not None and (sp.calls, sp.kept, sp.tokens_in, sp.tokens_out) == (2, 1, 3000, 300)
    assert sp.cost_usd == pytest.approx((2000 * 10.0 + 200 * 20.0) / 1e6 + 0.0012)
    alone = _second_pass(meta, prices)
    assert alone is not None and alone.cost_usd == pytest.approx((3000 * 10.0 + 300 * 20.0) / 1e6)
    assert _second_pass({"model": "m"}, prices) is None, "no second pass, no figures"


def test_humanizejob_status_targets_count_second_passes() -> None:
    from humanizer.jobs.models import JobView, Progress, TargetFigures
    from humanizer_operator.status import mirrored

    view = JobView(
        job_id="x", status="SUCCESS", phase="done", progress=Progress(completed=1, failed=0, skipped=0, total=1,
                                                                      percentage=100.0),
        provider="openai", model="m", style="neutral", retries=0, tokens_in=10, tokens_out=5, created_at=0.0,
        started_at=None, finished_at=None, error=None, dead_letters=0,
        targets=[TargetFigures(name="primary", provider="openai", model="m"),
                 TargetFigures(name="cheap", provider="openai", model="n", chunks=1, calls=2, second_passes=1)],
    )
    assert [t["secondPasses"] for t in mirrored(view)["targets"]] == [0, 1]
