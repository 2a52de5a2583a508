"""Providers: the model behind each chunk rewrite (``openai``, ``offline``, ``echo``)."""

from humanizer.providers.base import PROVIDERS, Provider, RewriteRequest, RewriteResult, build_provider
from humanizer.providers.errors import ErrorKind, ProviderError, classify, parse_retry_after
from humanizer.providers.prompts import STYLES, Style, build_messages, extract_text

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
