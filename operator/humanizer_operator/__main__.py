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


def main(argv: list[str] | None = None) -> None:
    kopf_main(args=build_args(list(sys.argv[1:] if argv is None else argv)), prog_name="humanizer-operator")


if __name__ == "__main__":
    main()
