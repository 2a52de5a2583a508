"""The Dockerfile's structure (no Docker engine here to build it; the kind tier builds it for real)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", TEXT)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def build_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", TEXT, re.MULTILINE))


def base_images() -> list[str]:
    args = build_args()
    images = []
    for word, rest in instructions():
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


def test_multi_stage_from_pinned_slim_python() -> None:
    images = base_images()
    assert len(images) >= 2
    for image in images:
        assert ":" in image and not image.endswith(":latest"), image
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    # the venv's interpreter symlink must find the same Python in the final stage
    assert images[0] == images[-1]
    assert re.search(r"^FROM \S+ AS builder$", TEXT, re.MULTILINE)


def test_builder_installs_exactly_the_lock() -> None:
    builder = stages()[0]
    copies = " ".join(rest for word, rest in builder if word == "COPY")
    assert "uv.lock" in copies and "pyproject.toml" in copies
    runs = [rest for word, rest in builder if word == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
    assert any(re.search(r"uv==\d+\.\d+\.\d+", r) or "UV_VERSION" in r for r in runs)
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in TEXT


def test_runtime_is_small_and_non_root() -> None:
    final = stages()[-1]
    words = [w for w, _ in final]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert "--uid 10001" in TEXT
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=builder /app/.venv /app/.venv"], "only the environment goes into the final image"
    assert not any("apt-get install" in rest or "pip install" in rest for word, rest in final if word == "RUN")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY"))


def test_entrypoint_and_cmd() -> None:
    final = dict((w, r) for w, r in stages()[-1] if w in ("ENTRYPOINT", "CMD"))
    assert json.loads(final["ENTRYPOINT"]) == ["humanizer"]
    assert json.loads(final["CMD"]) in (["api"], ["worker"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "humanizer" in scripts


def test_everything_copied_exists_and_is_not_ignored() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        state = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern[1:] if negate else pattern
            if fnmatch.fnmatch(path, pat.rstrip("/")) or fnmatch.fnmatch(path, pat.rstrip("/") + "/*") or (
                pat.endswith("/") and path.startswith(pat)):
                state = not negate
        return state

    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    for private in (".git", ".venv", ".env", "tests/unit/test_dockerfile.py", ".run"):
        assert ignored(private), f"{private} would be sent to the build context"
