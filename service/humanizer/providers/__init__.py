"""Providers: the model behind each chunk rewrite (``openai``, ``offline``, ``echo``)."""

from humanizer.providers.base import Provider, RewriteRequest, RewriteResult
from humanizer.providers.errors import ErrorKind, ProviderError, classify, parse_retry_after
from humanizer.providers.prompts import STYLES, Style, build_messages, extract_text
from humanizer.providers.registry import PROVIDERS, build_provider

__all__ = [
    "PROVIDERS",
    "STYLES",
    "ErrorKind",
    "Provider",
    "ProviderError",
    "RewriteRequest",
    "RewriteResult",
    "Style",
    "build_messages",
    "build_provider",
    "classify",
    "extract_text",
    "parse_retry_after",
]
