"""The namespaces this operator watches, as kopf was told (``--namespace`` ..., or ``--all-namespaces``).

kopf does not hand them to handlers, but the status loop (``handlers/progress.py``) lists the
HumanizeJobs of exactly those namespaces. ``kopf run`` (the chart's command) and ``humanizer-operator``
(which adds the defaults, see ``__main__.build_args``) run the operator inside click's ``run`` command, in
the main thread, where async startup handlers run too: the options are read from click's context there.
When kopf runs embedded (``kopf.run()``/``kopf.operator()``, no command line), kopf's own
``settings.peering.clusterwide`` says whether it is cluster-wide, and the namespaces are the defaults
``build_args`` would give (``HUMANIZER_OPERATOR_NAMESPACES``, else ``POD_NAMESPACE``).

Patterns are kopf's (globs, ``!`` negations, comma-separated parts; ``kopf._cogs.structs.references``,
whose matching this module reuses so that both agree on every name).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import click
from kopf._cogs.structs.references import NamespaceName, match_namespace

from humanizer_operator.settings import get_operator_settings

log = logging.getLogger("humanizer_operator.scope")
GLOB_CHARS = frozenset("*?!,")


def default_namespaces() -> list[str]:
    """Namespaces to watch when none is given: HUMANIZER_OPERATOR_NAMESPACES, else POD_NAMESPACE (else
    none: every namespace)."""
    return get_operator_settings().namespaces or [ns for ns in [os.environ.get("POD_NAMESPACE", "")] if ns]


@dataclass(frozen=True)
class Scope:
    clusterwide: bool
    patterns: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        """Every pattern names one namespace (list each of them; no need to list namespaces)."""
        return not any(GLOB_CHARS & set(p) for p in self.patterns)

    def matches(self, namespace: str) -> bool:
        return self.clusterwide or any(match_namespace(NamespaceName(namespace), p) for p in self.patterns)

    def __str__(self) -> str:
        return "all namespaces" if self.clusterwide else "namespaces " + ", ".join(self.patterns)


def detect(kopf_settings: Any) -> Scope:
    """The scope of the running kopf operator; call it from an async startup handler (main thread)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and "namespaces" in ctx.params and "clusterwide" in ctx.params:
        patterns = tuple(str(p) for p in ctx.params["namespaces"] or ())
        if os.environ.get("KOPF_RUN_NAMESPACE"):  # kopf's legacy single-namespace variable
            patterns += (os.environ["KOPF_RUN_NAMESPACE"],)
        if ctx.params["clusterwide"] or not patterns:
            return Scope(True)
        return Scope(False, patterns)
    if getattr(getattr(kopf_settings, "peering", None), "clusterwide", False):
        return Scope(True)
    defaults = default_namespaces()
    if not defaults:
        log.warning("cannot tell which namespaces kopf watches (no command line, no HUMANIZER_OPERATOR_NAMESPACES "
                    "or POD_NAMESPACE): the status loop lists every namespace")
        return Scope(True)
    return Scope(False, tuple(defaults))
