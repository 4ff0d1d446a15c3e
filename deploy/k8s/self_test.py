"""``check.py --self-test``: breaks copies of the manifests in memory, one way at a
time, and fails unless the checks catch each (a problem line names the expected word)."""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List

from manifests import HOST_CONTAINER, Manifests


def _pod(m: Manifests, file: str = "deployment.yaml") -> Dict[str, Any]:
    return m.files[file][0]["spec"]["template"]["spec"]


def _container(
    m: Manifests, name: str = HOST_CONTAINER, file: str = "deployment.yaml"
) -> Dict[str, Any]:
    spec = _pod(m, file)
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def _set_flag(m: Manifests, flag: str, value: str) -> None:
    args = _container(m)["args"]
    args[args.index(flag) + 1] = value


def _rename_flag(m: Manifests, flag: str, new: str) -> None:
    args = _container(m)["args"]
    args[args.index(flag)] = new


def _mount(m: Manifests, container: str, volume: str) -> Dict[str, Any]:
    return next(v for v in _container(m, container)["volumeMounts"] if v["name"] == volume)


def _probe(m: Manifests, probe: str) -> Dict[str, Any]:
    return _container(m)[probe]["httpGet"]


def _redis_args(m: Manifests) -> List[str]:
    return _container(m, "redis", "redis.yaml")["args"]


Mutation = Callable[[Manifests], None]
# fmt: off
#: (what breaks, a word the problem line must contain, how to break it).
MUTATIONS: List[tuple[str, str, Mutation]] = [
    ("grace period too short", "terminationGracePeriodSeconds", lambda m: _pod(m).update(terminationGracePeriodSeconds=25)),
    ("drain delay in minutes", "terminationGracePeriodSeconds", lambda m: _set_flag(m, "--drain-delay", "1m")),
    ("preStop sleep not counted", "terminationGracePeriodSeconds", lambda m: _container(m).update(lifecycle={"preStop": {"sleep": {"seconds": 10}}})),
    ("readiness probe on /livez", "readinessProbe.httpGet.path", lambda m: _probe(m, "readinessProbe").update(path="/livez")),
    ("liveness probe on the request port", "livenessProbe.httpGet.port", lambda m: _probe(m, "livenessProbe").update(port="tcp")),
    ("startup probe elsewhere", "startupProbe.httpGet.path", lambda m: _probe(m, "startupProbe").update(path="/")),
    ("--admin moved, probes not", "readinessProbe.httpGet.port", lambda m: _set_flag(m, "--admin", "0.0.0.0:9091")),
    ("readiness too slow for the drain", "readinessProbe.periodSeconds", lambda m: _container(m)["readinessProbe"].update(periodSeconds=10, failureThreshold=3)),
    ("unknown field", "was unexpected", lambda m: _container(m)["readinessProbe"].update(periodSecond=2)),
    ("unknown apiVersion", "apiVersion", lambda m: m.files["pdb.yaml"][0].update(apiVersion="policy/v1beta2")),
    ("Service on another port", "targetPort", lambda m: m.files["service.yaml"][0]["spec"]["ports"][0].update(targetPort=7273)),
    ("Service selects no host", "no Service selects", lambda m: m.files["service.yaml"][0]["spec"].update(selector={"app": "other"})),
    ("--host on loopback", "--host", lambda m: _set_flag(m, "--host", "127.0.0.1")),
    ("handlers mounted elsewhere", "--handlers", lambda m: _mount(m, HOST_CONTAINER, "handlers").update(mountPath="/handler")),
    ("handlers writable by the host", "readOnly", lambda m: _mount(m, HOST_CONTAINER, "handlers").pop("readOnly")),
    ("no sync sidecar", "sidecar", lambda m: _pod(m).update(containers=[_container(m)])),
    ("no init container", "init container", lambda m: _pod(m).pop("initContainers")),
    ("compile cache shared with the sidecar", "--cache-dir", lambda m: _container(m, "handlers-sync")["volumeMounts"].append({"name": "cache", "mountPath": "/cache"})),
    ("--redis names another Service", "--redis", lambda m: _set_flag(m, "--redis", "redis://redis:6379")),
    ("--redis on another port", "--redis", lambda m: _set_flag(m, "--redis", "redis://tcpy-redis:6380")),
    ("Redis without appendonly", "appendonly", lambda m: _redis_args(m).__setitem__(_redis_args(m).index("--appendonly") + 1, "no")),
    ("pod may run as root", "runAsNonRoot", lambda m: _pod(m)["securityContext"].pop("runAsNonRoot")),
    ("sidecar may escalate", "allowPrivilegeEscalation", lambda m: _container(m, "handlers-sync")["securityContext"].update(allowPrivilegeEscalation=True)),
    ("Redis root filesystem writable", "readOnlyRootFilesystem", lambda m: _container(m, "redis", "redis.yaml")["securityContext"].update(readOnlyRootFilesystem=False)),
    ("capabilities kept", "capabilities.drop", lambda m: _container(m, "handlers-init")["securityContext"]["capabilities"].update(drop=[])),
    ("memory limit below the pool", "limits.memory", lambda m: _container(m)["resources"]["limits"].update(memory="1Gi")),
    ("no CPU limit", "limits.cpu", lambda m: _container(m)["resources"]["limits"].pop("cpu")),
    ("manifest left out of the kustomization", "kustomization.yaml", lambda m: m.kustomization["resources"].remove("pdb.yaml")),
]
#: Caught only when check.py knows tcpy-host's flags (--tcpy-host).
MISSPELLED_FLAG = ("misspelled flag", "--grase", lambda m: _rename_flag(m, "--grace", "--grase"))
# fmt: on


def run(manifests: Manifests, check: Callable[[Manifests], List[str]], flags_known: bool) -> bool:
    """Whether `manifests` pass `check`, and each mutation of them fails it."""
    baseline = check(manifests)
    if baseline:
        print("self-test: the manifests themselves fail:", *baseline, sep="\n  ")
        return False
    mutations = MUTATIONS + [MISSPELLED_FLAG] if flags_known else MUTATIONS
    if not flags_known:
        print("self-test: no --tcpy-host given: flag names are not checked")
    missed = 0
    for what, expected, mutate in mutations:
        broken = copy.deepcopy(manifests)
        mutate(broken)
        caught = [line for line in check(broken) if expected in line]
        if caught:
            print(f"caught  {what}: {caught[0]}")
        else:
            print(f"MISSED  {what}: no problem mentions `{expected}`")
            missed += 1
    print(f"self-test: {len(mutations) - missed} of {len(mutations)} mutations caught")
    return missed == 0
