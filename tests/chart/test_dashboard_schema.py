"""The dashboards against Grafana's published dashboard schema.

Grafana publishes its dashboard schema in the npm package ``@grafana/schema``: TypeScript types generated
from its CUE definitions (``raw/dashboard/x/types.gen.d.ts``, the JSON model Grafana saves and imports).
No registry serves it as a JSON Schema (that package ships only ``.d.ts`` and JavaScript; see
docs/node-tier.md). So each dashboard JSON is written out as a TypeScript object literal typed
``Dashboard`` and the TypeScript compiler checks it with ``--strict``: a field of the wrong type, a
missing required field, or a field the schema does not know (object literals get excess-property checks)
fails with tsc's message. The versions are pinned in tools/dashboards/schema/package.json and its lock
file; ``npm ci`` installs them once into the cache. Needs node and npm (they fail the test with the
reason if missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "charts" / "humanizer" / "dashboards").glob("*.json"))
PINS = ROOT / "tools" / "dashboards" / "schema"
TYPES = "@grafana/schema/dist/types/raw/dashboard/x/types.gen"

pytestmark = pytest.mark.cluster


def schema_modules() -> Path:
    """node_modules with the pinned @grafana/schema and typescript (``npm ci``, cached by the lock file)."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed to check the dashboards against Grafana's schema"
    lock = (PINS / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("HUMANIZER_CACHE") or Path.home() / ".cache" / "humanizer")
    home = cache / "grafana-schema" / hashlib.sha256(lock).hexdigest()[:12]
    if not (home / "node_modules" / "typescript" / "bin" / "tsc").exists():
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PINS / name, home / name)
        proc = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=home,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, f"npm ci of {PINS} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return home / "node_modules"


def test_dashboards_match_grafanas_schema(tmp_path: Path) -> None:
    modules = schema_modules()
    types = (modules / TYPES).as_posix()
    assert Path(types + ".d.ts").exists(), f"{TYPES}.d.ts is not in the pinned @grafana/schema"
    lines = [f'import type {{ Dashboard }} from "{types}";']
    for path in DASHBOARDS:
        const = "d_" + path.stem.replace("-", "_")
        literal = json.dumps(json.loads(path.read_text()), indent=1)
        lines.append(f"// {path.name}\nexport const {const}: Dashboard = {literal};")
    check = tmp_path / "dashboards.ts"
    check.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        ["node", str(modules / "typescript" / "bin" / "tsc"), "--noEmit", "--strict", "--target", "es2020",
         "--moduleResolution", "node", str(check)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"dashboards that do not match Grafana's dashboard schema ({TYPES}); lines of {check}:\n"
        f"{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )
    assert len(DASHBOARDS) >= 2


def test_the_check_catches_a_wrong_dashboard(tmp_path: Path) -> None:
    """The same check fails on a dashboard with a wrongly typed and an unknown field: it can fail."""
    modules = schema_modules()
    bad = tmp_path / "bad.ts"
    bad.write_text(f'import type {{ Dashboard }} from "{(modules / TYPES).as_posix()}";\n'
                   'export const wrong_type: Dashboard = {"schemaVersion": "39"};\n'
                   'export const unknown_field: Dashboard = {"schemaVersion": 39, "panelz": []};\n')  # fmt: skip
    proc = subprocess.run(["node", str(modules / "typescript" / "bin" / "tsc"), "--noEmit", "--strict", str(bad)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert "bad.ts(2," in proc.stdout and "bad.ts(3," in proc.stdout and "panelz" in proc.stdout, proc.stdout
