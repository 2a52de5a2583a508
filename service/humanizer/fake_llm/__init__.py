"""A fake OpenAI-compatible chat-completions server with fault injection (tests, benchmarks, offline demos).

Run it with ``python -m humanizer.fake_llm`` (or ``humanizer fake-llm``); from tests use
``humanizer.fake_llm.testing.start_fake_llm_process``.
"""

from humanizer.fake_llm.config import FakeLLMConfig, FaultRule, parse_fault

__all__ = ["FakeLLMConfig", "FaultRule", "parse_fault"]
