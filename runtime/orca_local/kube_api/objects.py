"""The REST semantics of the API server over the store: create, update, patch, delete, bind.

This is where the emulator earns its keep for ORCA: uids and resourceVersions, 409 on
existing names and stale writes, status kept apart from the main resource, pod spec
immutability, graceful pod deletion, finalizers and namespace cascade. Every operation runs
under the store's lock, so a read-check-write is atomic as an etcd transaction is.
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import uuid
from typing import Any

from . import errors
from .defaults import apply_defaults
from .patching import APPLY_PATCH, apply_patch
from .resources import SPEC_KINDS, ResourceType
from .selectors import field_selector, label_selector
from .store import Obj, Store

TERMINAL_PHASES = ("Succeeded", "Failed")
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-node-lease", "kube-public")
_NS_TYPE = ResourceType("", "v1", "namespaces", "Namespace", False)
_MUTABLE_POD_FIELDS = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bucket(rt: ResourceType) -> tuple[str, str]:
    return (rt.group, rt.plural)


class Registry:
    """API operations on typed objects, in the order and with the errors the real server uses."""

    def __init__(self, store: Store) -> None:
        self.store = store
        for name in BUILTIN_NAMESPACES:
            self.create(_NS_TYPE, "", {"metadata": {"name": name}})

    # Reads.

    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(_bucket(rt), (ns, name))
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def list(
        self, rt: ResourceType, ns: str | None, labels: str | None, fields: str | None
    ) -> tuple[list[Obj], int]:
        matches = self.matcher(rt, labels, fields)
        items, rv = self.store.items(_bucket(rt), ns)
        return [o for o in items if matches(o)], rv

    def matcher(self, rt: ResourceType, labels: str | None, fields: str | None) -> Any:
        by_label = label_selector(labels)
        by_field = field_selector(fields, rt.kind)
        return lambda obj: by_label(obj) and by_field(obj)

    # Writes.

    def create(self, rt: ResourceType, ns: str, obj: Obj, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        if not name:
            raise errors.invalid(
                rt.kind,
                rt.group,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind

        with self.store.cond:
            if rt.namespaced and self.store.get(("", "namespaces"), ("", ns)) is None:
                raise errors.not_found("", "namespaces", ns)
            if self.store.get(_bucket(rt), (ns, name)) is not None:
                raise errors.already_exists(rt.group, rt.plural, name)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(transient, None)
            if rt.kind in SPEC_KINDS:
                meta["generation"] = 1
            apply_defaults(rt.kind, obj, creating=True)
            if dry_run:
                return obj
            return self.store.write(_bucket(rt), (ns, name), obj, "ADDED")

    def update(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        new: Obj,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        body_name = (new.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        with self.store.cond:
            old = self.store.get(_bucket(rt), (ns, name))
            if old is None:
                if rt.kind == "Event" and subresource is None:
                    return self.create(rt, ns, new, dry_run)
                raise errors.not_found(rt.group, rt.plural, name)
            sent_rv = (new.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.group, rt.plural, name, errors.STALE_OBJECT)
            merged = self._prepare_update(rt, old, copy.deepcopy(new), subresource)
            if dry_run:
                return merged
            return self._store_update(rt, ns, name, old, merged)

    def _prepare_update(self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            result = copy.deepcopy(old)
            result["status"] = new.get("status", {})
            for key in ("labels", "annotations"):
                if key in (new.get("metadata") or {}):
                    result["metadata"][key] = new["metadata"][key]
            return result

        meta = new.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if "status" in rt.subresources:
            new.pop("status", None)
            if "status" in old:
                new["status"] = old["status"]
        apply_defaults(rt.kind, new, creating=False)
        if rt.kind == "Pod":
            _check_pod_spec_update(old, new)
        if rt.kind in SPEC_KINDS and old.get("spec") != new.get("spec"):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return new

    def _store_update(self, rt: ResourceType, ns: str, name: str, old: Obj, new: Obj) -> Obj:
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            # etcd does not write an unchanged value: no new resourceVersion, no event.
            return old
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            return self.store.write(_bucket(rt), (ns, name), new, "DELETED")
        return self.store.write(_bucket(rt), (ns, name), new, "MODIFIED")

    def patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: bytes,
        content_type: str,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Apply a PATCH; returns the object and whether it was created (server-side apply)."""
        with self.store.cond:
            old = self.store.get(_bucket(rt), (ns, name))
            if old is None:
                if content_type.split(";")[0].strip() == APPLY_PATCH and subresource is None:
                    created = apply_patch({}, body, content_type)
                    created.setdefault("metadata", {})["name"] = name
                    return self.create(rt, ns, created, dry_run), True
                raise errors.not_found(rt.group, rt.plural, name)
            patched = apply_patch(old, body, content_type)
            sent_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.group, rt.plural, name, errors.STALE_OBJECT)
            merged = self._prepare_update(rt, old, patched, subresource)
            if dry_run:
                return merged, False
            return self._store_update(rt, ns, name, old, merged), False

    def delete(self, rt: ResourceType, ns: str, name: str, options: Obj) -> Obj:
        """Delete at once, or mark for graceful deletion / finalizers as the real server does."""
        with self.store.cond:
            obj = self.get(rt, ns, name)
            meta = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise errors.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
            if options.get("dryRun"):
                return obj
            if rt.kind == "Namespace":
                return self._delete_namespace(obj)

            grace = self._grace_period(rt, obj, options)
            if grace > 0 or meta.get("finalizers"):
                return self._mark_deleted(rt, obj, grace)
            return self.store.write(_bucket(rt), (ns, name), obj, "DELETED")

    def _grace_period(self, rt: ResourceType, obj: Obj, options: Obj) -> int:
        # Only pods bound to a node and still running wait for their kubelet.
        if rt.kind != "Pod":
            return 0
        if not obj.get("spec", {}).get("nodeName"):
            return 0
        if obj.get("status", {}).get("phase") in TERMINAL_PHASES:
            return 0
        requested = options.get("gracePeriodSeconds")
        if requested is None:
            requested = obj["spec"].get("terminationGracePeriodSeconds", 30)
        current = obj["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and int(current) < int(requested):
            return int(current)
        return max(int(requested), 0)

    def _mark_deleted(self, rt: ResourceType, obj: Obj, grace: int) -> Obj:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        if grace == 0 and not meta.get("finalizers"):
            return self.store.write(_bucket(rt), (ns, name), obj, "DELETED")
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == grace:
            return obj
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
        meta["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["deletionGracePeriodSeconds"] = grace
        if rt.kind in SPEC_KINDS:
            meta["generation"] = int(meta.get("generation", 1)) + 1
        return self.store.write(_bucket(rt), (ns, name), obj, "MODIFIED")

    def _delete_namespace(self, ns_obj: Obj) -> Obj:
        # A simple cascade: everything in the namespace goes at once, then the namespace.
        from .resources import RESOURCES

        name = ns_obj["metadata"]["name"]
        for rt in RESOURCES:
            if rt.namespaced:
                for obj in self.store.items(_bucket(rt), name)[0]:
                    self.store.write(_bucket(rt), (name, obj["metadata"]["name"]), obj, "DELETED")
        return self.store.write(("", "namespaces"), ("", name), ns_obj, "DELETED")

    def bind(self, rt: ResourceType, ns: str, name: str, binding: Obj) -> None:
        """POST pods/{name}/binding: assign the node once and mark the pod scheduled."""
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("Binding", "", name, "target.name", "Required value")
        with self.store.cond:
            pod = self.get(rt, ns, name)
            uid = (binding.get("metadata") or {}).get("uid")
            if uid and uid != pod["metadata"]["uid"]:
                raise errors.conflict(
                    "", "pods/binding", name, f"Precondition failed: UID in precondition: {uid}"
                )
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods/binding", name, f"pod {name} is being deleted")
            current = pod["spec"].get("nodeName")
            if current:
                raise errors.conflict(
                    "", "pods/binding", name, f'pod {name} is already assigned to node "{current}"'
                )
            pod["spec"]["nodeName"] = target
            conditions = pod.setdefault("status", {}).setdefault("conditions", [])
            conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                }
            )
            self.store.write(_bucket(rt), (ns, name), pod, "MODIFIED")


def _check_pod_spec_update(old: Obj, new: Obj) -> None:
    def frozen(spec: Obj) -> Obj:
        spec = copy.deepcopy(spec)
        for key in ("containers", "initContainers"):
            for c in spec.get(key) or []:
                c.pop("image", None)
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            spec.pop(key, None)
        return spec

    if frozen(old.get("spec", {})) != frozen(new.get("spec", {})):
        name = old["metadata"]["name"]
        raise errors.invalid(
            "Pod",
            "",
            name,
            "spec",
            f"Forbidden: pod updates may not change fields other than {_MUTABLE_POD_FIELDS}",
        )
