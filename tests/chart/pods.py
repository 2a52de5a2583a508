"""A rendered container as the kubelet would start it, on this machine: for running what the chart gives a pod.

:func:`container_files_and_env` writes the container's volumes (ConfigMaps and Secrets, rendered ones from the
chart's objects, others from data the test gives) under a directory, one folder per mount path, and returns its
environment (``envFrom`` ConfigMaps, then ``env``: values and ``secretKeyRef``/``configMapKeyRef``), with every
value that names a path under a mount point moved under that directory. Used by tests/chart and by the
integration tier's test of Flower's broker connection.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Objects = list[dict[str, Any]]
Given = Mapping[tuple[str, str], str]  # (name of a Secret or ConfigMap the chart does not render, key) -> value


def source_data(objects: Objects, kind: str, name: str, given: Given) -> dict[str, str]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if found:
        o = found[0]
        if kind == "Secret":
            return {**{k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()},
                    **(o.get("stringData") or {})}
        return dict(o.get("data") or {})
    data = {key: value for (n, key), value in given.items() if n == name}
    assert data, f"{kind}/{name}: neither rendered nor given"
    return data


def _volume_source(volume: dict[str, Any]) -> tuple[str, str, list[dict[str, str]] | None] | None:
    if "emptyDir" in volume:
        return None
    if "configMap" in volume:
        return "ConfigMap", volume["configMap"]["name"], volume["configMap"].get("items")
    if "secret" in volume:
        return "Secret", volume["secret"]["secretName"], volume["secret"].get("items")
    raise AssertionError(f"volume {volume['name']}: a kind these tests do not lay out")


def container_files_and_env(objects: Objects, pod_spec: dict[str, Any], container: dict[str, Any], given: Given,
                            root: Path) -> dict[str, str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    moved: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        moved[mount["mountPath"]] = str(target)
        source = _volume_source(volumes[mount["name"]])
        if source is None:
            continue
        kind, name, items = source
        data = source_data(objects, kind, name, given)
        for key, path in ((i["key"], i["path"]) for i in items) if items else ((k, k) for k in data):
            assert key in data, f"{kind}/{name} has no key {key!r}"
            (target / path).write_text(data[key])
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        kind, ref = ("ConfigMap", src["configMapRef"]) if "configMapRef" in src else ("Secret", src["secretRef"])
        env.update(source_data(objects, kind, ref["name"], given))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref_kind = next(iter(e["valueFrom"]))
        kind = {"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"}[ref_kind]
        ref = e["valueFrom"][ref_kind]
        env[e["name"]] = source_data(objects, kind, ref["name"], given)[ref["key"]]
    for name, value in env.items():
        for mount_path, target in moved.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                env[name] = target + value[len(mount_path):]
    return env
