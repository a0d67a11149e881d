"""What the real API server fills in on create and update, per kind.

Clients and kubectl rely on these: a pod is ``Pending`` with a QoS class from birth, has a
restart policy, DNS policy, grace period and scheduler name; containers have termination
message settings and a pull policy; requests default to limits. Secrets fold ``stringData``
into base64 ``data``. Services get a cluster IP; jobs get their selector and defaults.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

Obj = dict[str, Any]

_cluster_ips = itertools.count(1)

# Added by the DefaultTolerationSeconds admission plugin on every real cluster.
_DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def apply_defaults(kind: str, obj: Obj, creating: bool) -> None:
    """Fill in server-side defaults in place."""
    if kind == "Pod":
        _pod(obj, creating)
    elif kind == "Secret":
        _secret(obj)
    elif kind == "Namespace":
        _namespace(obj)
    elif kind == "Service":
        _service(obj, creating)
    elif kind == "Job":
        _job(obj)


def _image_pull_policy(image: str) -> str:
    # The real defaulting rule: no tag or ":latest" pulls always.
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _container(c: Obj) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _image_pull_policy(str(c.get("image", ""))))
    resources = c.setdefault("resources", {})
    # Quantities are strings on the wire; a bare number in a manifest comes back quoted.
    for section in ("limits", "requests"):
        for name, value in (resources.get(section) or {}).items():
            resources[section][name] = _quantity(value)
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")


def _quantity(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def qos_class(spec: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, by the rules kubelets and the server share."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or str(requests.get(name, limits[name])) != str(limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _pod(pod: Obj, creating: bool) -> None:
    spec = pod.setdefault("spec", {})
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        _container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    for volume in spec.get("volumes") or []:
        for source in ("configMap", "secret"):
            if source in volume:
                volume[source].setdefault("defaultMode", 420)
    # The admission plugin runs on create and on update, so re-applied manifests keep them.
    tolerations = spec.setdefault("tolerations", [])
    for default in _DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(dict(default))
    if creating:
        # Whatever status a client sends on create is replaced, as by the real pod strategy.
        pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def _secret(secret: Obj) -> None:
    secret.setdefault("type", "Opaque")
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _namespace(ns: Obj) -> None:
    name = ns.get("metadata", {}).get("name", "")
    ns.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns.setdefault("status", {}).setdefault("phase", "Active")


def _service(svc: Obj, creating: bool) -> None:
    spec = svc.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if creating and spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
        n = next(_cluster_ips)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 2}"
        spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    svc.setdefault("status", {}).setdefault("loadBalancer", {})


def _job(job: Obj) -> None:
    # The selector keys on the job's uid, which the caller has assigned already.
    uid = job.get("metadata", {}).get("uid", "")
    spec = job.setdefault("spec", {})
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)
    labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    tmeta.setdefault("labels", {}).update(labels)
    tmeta["labels"].setdefault("batch.kubernetes.io/job-name", job["metadata"].get("name", ""))
    tmeta["labels"].setdefault("job-name", job["metadata"].get("name", ""))
    tspec = template.setdefault("spec", {})
    for c in list(tspec.get("containers") or []) + list(tspec.get("initContainers") or []):
        _container(c)
    tspec.setdefault("restartPolicy", "Never")
    tspec.setdefault("terminationGracePeriodSeconds", 30)
    tspec.setdefault("dnsPolicy", "ClusterFirst")
    tspec.setdefault("schedulerName", "default-scheduler")
    tspec.setdefault("securityContext", {})
    job.setdefault("status", {})
