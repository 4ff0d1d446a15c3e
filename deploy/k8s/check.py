#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/k8s (run by ``cargo xtask check-k8s``).

1. The kustomization lists every manifest of the directory, and each resource it
   lists validates against the official schemas of one Kubernetes version, strictly:
   an unknown or misplaced field is an error (``kubernetes-validate``, offline).
2. What tcpy-host depends on agrees with the flags its container is given: probes on
   the ``--admin`` port (``/readyz``, ``/livez``) and quick enough to see a drain,
   ``terminationGracePeriodSeconds`` above preStop + ``--drain-delay`` + ``--grace``,
   the Service on ``--port``, the handlers volume at ``--handlers`` (filled by an init
   container, kept in sync by a sidecar), ``--redis`` at the Redis Service, the memory
   limit above what the instance pool may use, and every container locked down.

Each problem is one line naming the file, the resource and the field; the exit status
is then 1. ``--self-test`` breaks copies of the manifests in memory, one way at a time,
and fails unless each is caught.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import List, Optional, Set

import kubernetes_validate
from kubernetes_validate.utils import VersionNotSupportedError

import self_test
from host_rules import HostCheck, host_flag_names
from manifests import (
    HOST_CONTAINER,
    WORKLOADS,
    Manifests,
    Problems,
    Resource,
    container,
    load,
    pod_spec,
)

#: The Kubernetes release the manifests must be valid for: the oldest one still
#: maintained upstream (December 2026), so every maintained cluster accepts them.
KUBERNETES_VERSION = "1.35"


def check(manifests: Manifests, version: str, host_flags: Optional[Set[str]]) -> List[str]:
    """Every problem of ``manifests``, as lines; none if they pass."""
    problems = Problems()
    listed = manifests.kustomization.get("resources") or []
    for name in sorted(set(manifests.files) - set(listed)):
        problems.add("kustomization.yaml: resources", f"`{name}` is not listed, so never applied")
    resources: List[Resource] = []
    for name in listed:
        if name not in manifests.files:
            problems.add(
                "kustomization.yaml: resources", f"`{name}` is listed but not in the directory"
            )
        resources += [Resource(name, doc) for doc in manifests.files.get(name, [])]
    for resource in resources:
        check_schema(resource, version, problems)
    for resource in resources:
        if resource.kind in WORKLOADS:
            check_pod_security(resource, problems)
    host = [r for r in resources if r.kind in WORKLOADS and container(pod_spec(r), HOST_CONTAINER)]
    if len(host) != 1:
        problems.add(
            "deploy/k8s",
            f"want one workload with a container `{HOST_CONTAINER}`, found {len(host)}",
        )
    else:
        HostCheck(host[0], resources, host_flags, problems).run()
    return problems.lines


def check_schema(resource: Resource, version: str, problems: Problems) -> None:
    try:
        kubernetes_validate.validate(resource.doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "(document)"
        problems.add(resource.at(path), f"{error.message} (Kubernetes {version} schema, strict)")
    except kubernetes_validate.SchemaNotFoundError as error:
        problems.add(resource.at("apiVersion"), error.message)


def check_pod_security(workload: Resource, problems: Problems) -> None:
    """Non-root, no privilege escalation, read-only root, no capabilities, seccomp,
    and requests and limits, for every container of the pod."""
    spec = pod_spec(workload)
    pod = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.add(workload.at(f"spec.template.spec.{flag}"), "must not be true")
    for kind in ("initContainers", "containers"):
        for each in spec.get(kind) or []:
            at = f"spec.template.spec.{kind}[{each.get('name')}]"
            own = each.get("securityContext") or {}
            merged = {**pod, **own}
            if merged.get("runAsNonRoot") is not True:
                problems.add(
                    workload.at(f"{at}.securityContext.runAsNonRoot"),
                    "must be true (here or in the pod's)",
                )
            if merged.get("runAsUser") == 0:
                problems.add(workload.at(f"{at}.securityContext.runAsUser"), "must not be 0 (root)")
            if (merged.get("seccompProfile") or {}).get("type") not in (
                "RuntimeDefault",
                "Localhost",
            ):
                problems.add(
                    workload.at(f"{at}.securityContext.seccompProfile"),
                    "want RuntimeDefault (here or in the pod's)",
                )
            if own.get("allowPrivilegeEscalation") is not False:
                problems.add(
                    workload.at(f"{at}.securityContext.allowPrivilegeEscalation"), "must be false"
                )
            if own.get("readOnlyRootFilesystem") is not True:
                problems.add(
                    workload.at(f"{at}.securityContext.readOnlyRootFilesystem"), "must be true"
                )
            if own.get("privileged"):
                problems.add(workload.at(f"{at}.securityContext.privileged"), "must not be true")
            capabilities = own.get("capabilities") or {}
            if "ALL" not in (capabilities.get("drop") or []):
                problems.add(
                    workload.at(f"{at}.securityContext.capabilities.drop"), 'must include "ALL"'
                )
            if capabilities.get("add"):
                problems.add(workload.at(f"{at}.securityContext.capabilities.add"), "must be empty")
            resources = each.get("resources") or {}
            for bound in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (resources.get(bound) or {}):
                        problems.add(workload.at(f"{at}.resources.{bound}.{what}"), "missing")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=Path(__file__).parent)
    parser.add_argument(
        "--kubernetes-version",
        default=KUBERNETES_VERSION,
        help=f"schemas to validate against [default: {KUBERNETES_VERSION}]",
    )
    parser.add_argument(
        "--tcpy-host", metavar="BIN", help="also check every flag is one of BIN --help's"
    )
    parser.add_argument(
        "--self-test", action="store_true", help="check that broken copies of the manifests fail"
    )
    options = parser.parse_args()
    manifests = load(options.directory)
    host_flags = host_flag_names(options.tcpy_host) if options.tcpy_host else None
    try:
        if options.self_test:
            checked = partial(check, version=options.kubernetes_version, host_flags=host_flags)
            return 0 if self_test.run(manifests, checked, host_flags is not None) else 1
        problems = check(manifests, options.kubernetes_version, host_flags)
    except VersionNotSupportedError:
        print(
            f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes {options.kubernetes_version}"
        )
        return 2
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in {os.path.relpath(options.directory)}")
        return 1
    count = sum(
        len(manifests.files[name]) for name in manifests.kustomization.get("resources") or []
    )
    flags = "every flag known to tcpy-host" if host_flags is not None else "flag names not checked"
    print(
        f"{os.path.relpath(options.directory)}: {count} resources valid against Kubernetes {options.kubernetes_version} (strict); tcpy-host's fields agree with its flags ({flags})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
