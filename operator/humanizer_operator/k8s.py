"""Small Kubernetes helpers: the API client, metav1.Condition bookkeeping, owned ConfigMaps, Events.

kopf talks to the API server for its own work (watches, the status patches and Events of its
handlers); what runs outside kopf's per-object handlers (the status loop: listing HumanizeJobs, their
status patches and Events, output ConfigMaps, deleting finished jobs; the worker Deployment) goes
through the official ``kubernetes`` client configured here.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP = "humanizer.dev"
VERSION = "v1alpha1"
PLURAL = "humanizejobs"
KIND = "HumanizeJob"
API_VERSION = f"{GROUP}/{VERSION}"

PAUSE_ANNOTATION = "humanizer.dev/autoscale-paused"
JOB_LABEL = "humanizer.dev/job"
# The finalizer earlier operator versions put on every HumanizeJob (kopf's, for a delete handler
# and a per-object timer). None is put any more; the status loop removes this one where it is left.
LEGACY_FINALIZER = "humanizer.dev/operator"

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_lock = threading.Lock()


@functools.cache
def api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG``)."""
    with _lock:
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)
        return client.ApiClient(cfg)


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def apps() -> client.AppsV1Api:
    return client.AppsV1Api(api_client())


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


# ---- time and conditions ----------------------------------------------------------------------
def rfc3339(ts: float | None = None) -> str:
    """``2025-01-01T12:00:00Z`` (seconds precision, as metav1.Time)."""
    when = dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new conditions list with ``type_`` set (metav1.Condition semantics).

    ``lastTransitionTime`` moves only when the status changes; reason/message/observedGeneration are
    updated in place otherwise.
    """
    value = status if isinstance(status, str) else ("True" if status else "False")
    result = [dict(c) for c in conditions or []]
    for cond in result:
        if cond.get("type") == type_:
            if cond.get("status") != value:
                cond["lastTransitionTime"] = now or rfc3339()
            cond.update(status=value, reason=reason, message=message[:32768])
            if generation is not None:
                cond["observedGeneration"] = generation
            return result
    new: dict[str, Any] = {
        "type": type_, "status": value, "reason": reason, "message": message[:32768],
        "lastTransitionTime": now or rfc3339(),
    }
    if generation is not None:
        new["observedGeneration"] = generation
    result.append(new)
    return result


def get_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


# ---- names ---------------------------------------------------------------------------------------
def is_dns1123_subdomain(name: str) -> bool:
    """A valid name for most objects (ConfigMaps among them): at most 253 characters, lower-case
    alphanumerics, '-' and '.', alphanumeric at both ends of each dot-separated part."""
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def api_message(exc: ApiException) -> str:
    """The API server's one-line message of a refused request (its Status), else the HTTP reason."""
    try:
        return str(json.loads(exc.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return f"{exc.status} {exc.reason}"


# ---- objects ------------------------------------------------------------------------------------
def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body.get("kind", KIND),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def read_configmap_key(namespace: str, name: str, key: str) -> str | None:
    """The value of ``key`` (data or UTF-8 binaryData); None when the ConfigMap or key is missing."""
    try:
        cm = core().read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if cm.data and key in cm.data:
        return str(cm.data[key])
    if cm.binary_data and key in cm.binary_data:
        import base64

        return base64.b64decode(cm.binary_data[key]).decode("utf-8")
    return None


class OutputConflict(RuntimeError):
    """The output ConfigMap exists and belongs to something else."""


def write_owned_configmap(
    namespace: str, name: str, data: Mapping[str, str], owner: Mapping[str, Any], labels: Mapping[str, str]
) -> None:
    """Create the ConfigMap, or replace it if this owner already owns it (idempotent on retries)."""
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, labels=dict(labels), owner_references=[owner_reference(owner)]
        ),
        data=dict(data),
    )
    api = core()
    try:
        api.create_namespaced_config_map(namespace, body)
        return
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = api.read_namespaced_config_map(name, namespace)
    uid = owner["metadata"]["uid"]
    if not any(ref.uid == uid for ref in existing.metadata.owner_references or []):
        raise OutputConflict(f"ConfigMap {name} already exists and is not owned by this HumanizeJob")
    body.metadata.resource_version = existing.metadata.resource_version
    api.replace_namespaced_config_map(name, namespace, body)


def list_humanizejobs(namespace: str | None) -> list[dict[str, Any]]:
    """The HumanizeJobs of one namespace (``None``: of every namespace), as plain dicts."""
    api = custom()
    if namespace is None:
        listed = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    else:
        listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return [
        {"apiVersion": API_VERSION, "kind": KIND, **item} for item in (listed.get("items") or [])
    ]


def get_humanizejob(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_namespaces() -> list[str]:
    return [ns.metadata.name for ns in core().list_namespace().items]


def patch_humanizejob_status(
    namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
) -> bool:
    """Merge-patch ``.status`` (the status subresource) of one HumanizeJob.

    With ``resource_version`` the patch applies only to that version of the object (the API server
    answers 409 otherwise): the status was computed from it, and a handler may have changed the object
    since. False when the object changed or is gone (the next pass recomputes from a fresh read)."""
    body: dict[str, Any] = {"status": dict(status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
        )
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


def remove_finalizer(body: Mapping[str, Any], finalizer: str) -> bool:
    """Remove ``finalizer`` from one HumanizeJob's ``metadata.finalizers`` (a JSON patch that tests the
    entry first, so another controller's finalizers are never touched). False if there was none to
    remove, the list changed meanwhile, or the object is gone."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if finalizer not in finalizers:
        return False
    path = f"/metadata/finalizers/{finalizers.index(finalizer)}"
    patch = [{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}]
    try:
        custom().patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], patch,
            _content_type="application/json-patch+json",
        )
    except ApiException as exc:
        if exc.status in (404, 409, 422):  # gone, or the list changed: the next pass looks again
            return False
        raise
    return True


def delete_humanizejob(namespace: str, name: str, uid: str) -> None:
    """Delete one HumanizeJob (only the object with this UID); a missing object is fine."""
    try:
        custom().delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid),
                                        propagation_policy="Background"),
        )
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise


def post_event(
    involved: Mapping[str, Any], type_: str, reason: str, message: str, component: str = "humanizer-operator"
) -> None:
    """A core/v1 Event on any object (for work outside kopf's per-object handlers, e.g. the autoscaler)."""
    meta = involved["metadata"]
    now = dt.datetime.now(dt.UTC)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=involved.get("apiVersion"), kind=involved.get("kind"), name=meta["name"],
            namespace=meta["namespace"], uid=meta.get("uid"),
        ),
        type=type_, reason=reason, message=message[:1024], first_timestamp=now, last_timestamp=now, count=1,
        source=client.V1EventSource(component=component), reporting_component=component,
        reporting_instance=component,
    )
    core().create_namespaced_event(meta["namespace"], event)


# ---- worker pods (the autoscaler's scale-down) ----------------------------------------------------
def list_pods(namespace: str, match_labels: Mapping[str, str]) -> list[Any]:
    """The pods of ``namespace`` carrying every label of ``match_labels`` (a Deployment's selector)."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
    return list(core().list_namespaced_pod(namespace, label_selector=selector).items)


def annotate_pod(namespace: str, name: str, annotations: Mapping[str, str | None]) -> bool:
    """Merge ``annotations`` into one pod's metadata (a None value removes that key); False when the pod
    is gone."""
    try:
        core().patch_namespaced_pod(
            name, namespace, {"metadata": {"annotations": dict(annotations)}},
            _content_type="application/merge-patch+json",
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
