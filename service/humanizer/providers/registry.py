"""The providers by name: ``build_provider("offline")``. The implementations are imported when one is built
(``openai_provider`` needs the ``openai`` SDK; an offline worker never imports it); they import ``base``, never
this module, so the package has no import cycle."""

from __future__ import annotations

from typing import Any

from humanizer.providers.base import Provider

#: Provider names accepted by job submission.
PROVIDERS: tuple[str, ...] = ("offline", "openai", "echo")
_ALIASES = {"identity": "echo"}


def build_provider(name: str, **options: Any) -> Provider:
    """A provider by name: ``offline``, ``openai`` or ``echo`` (alias ``identity``).

    ``options`` go to the provider's constructor (for ``openai``: api_key, base_url, model, temperature,
    max_tokens, timeout, max_retries). Raises ``ValueError`` for an unknown name or unknown options.
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower()) if isinstance(name, str) else ""
    if key == "openai":
        from humanizer.providers.openai_provider import OpenAIProvider

        cls: Any = OpenAIProvider
    elif key == "offline":
        from humanizer.providers.offline import OfflineProvider

        cls = OfflineProvider
    elif key == "echo":
        from humanizer.providers.offline import EchoProvider

        cls = EchoProvider
    else:
        raise ValueError(f"unknown provider {name!r}; choose one of: {', '.join(PROVIDERS)}")
    try:
        provider: Provider = cls(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for provider {key!r}: {exc}") from None
    return provider
