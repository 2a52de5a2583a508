"""``python -m humanizer_operator`` / ``humanizer-operator``: ``kopf run`` with our module and defaults.

Every ``kopf run`` option works (``--namespace``, ``--all-namespaces``, ``--standalone``,
``--peering``, ``--liveness``, ``--verbose`` ...). Without ``--namespace``/``-n``/``--all-namespaces``
the namespaces come from ``HUMANIZER_OPERATOR_NAMESPACES`` (comma-separated), else ``POD_NAMESPACE``,
else every namespace.
"""

from __future__ import annotations

import sys

from kopf.cli import main as kopf_main

from humanizer_operator.scope import default_namespaces

MODULE = "humanizer_operator.main"


def build_args(argv: list[str]) -> list[str]:
    args = ["run", f"--module={MODULE}", *argv]
    scoped = any(a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in argv)
    if not scoped:
        args += [f"--namespace={ns}" for ns in default_namespaces()] or ["--all-namespaces"]
    return args


def startup_checks() -> None:
    """Settings that validate and a Redis that answers, or one line on stderr and exit 2 (no traceback)."""
    from humanizer.startup import StartupError, exit_with, load, load_settings, wait_for_redis
    from humanizer_operator.settings import OperatorSettings, get_operator_settings

    try:
        settings = load_settings()
        op = load(get_operator_settings, OperatorSettings)
        try:
            settings.resolve_queues(op.queues)
        except ValueError as exc:
            raise StartupError(f"HUMANIZER_AUTOSCALE_QUEUES: {exc}") from None
        wait_for_redis(settings)
    except StartupError as exc:
        exit_with(str(exc))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("-h", "--help") for a in argv):
        startup_checks()
    kopf_main(args=build_args(argv), prog_name="humanizer-operator")


if __name__ == "__main__":
    main()
