"""Helpers shared by cluster-tier tests: kubectl/helm wrappers and a bounded poll."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml


class KubeTool:
    """Run a CLI (kubectl, helm) against the test cluster: ``tool(*args, input=..., check=True)``.

    Returns the CompletedProcess (text); KUBECONFIG and ``env`` are set for the child.
    """

    def __init__(self, path: Path, kubeconfig: Path, env: dict[str, str] | None = None) -> None:
        self.path = path
        self.kubeconfig = kubeconfig
        self.env = dict(env or {})

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(
            [str(self.path), *args], input=input, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.path.name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc


class Kubectl(KubeTool):
    """kubectl with an ``apply`` shortcut for dict objects."""

    def apply(self, objects: dict | Sequence[dict], namespace: str | None = None) -> str:
        """``kubectl apply -f -`` for one or more objects given as dicts."""
        docs = [objects] if isinstance(objects, dict) else list(objects)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self(*args, input=yaml.safe_dump_all(docs)).stdout


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``check`` until true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
