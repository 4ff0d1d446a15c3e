"""The checks of tcpy-host's container against its own flags: what the probes, the
termination grace period, the Service, the volumes, Redis and the memory limit must be
for the host's drain, hot swap and limits to work as docs/operations.md says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Set
from urllib.parse import urlsplit

from manifests import HOST_CONTAINER, WORKLOADS, Problems, Resource, container, pod_spec, selects

#: Seconds past the host's own exit bound the kubelet must wait before SIGKILL: the
#: host's 200 ms wait for blocking work, and the kubelet's timing.
EXIT_MARGIN = 2
#: What the host holds besides its instances and connections: compiled handlers and
#: one hot swap's compile (measured: 150-250 MiB warm for the examples).
HOST_BASELINE = 512 << 20
#: The flags the checks compare the manifests with: they must be given, not defaulted.
REQUIRED_FLAGS = (
    "--host",
    "--port",
    "--handlers",
    "--admin",
    "--redis",
    "--drain-delay",
    "--grace",
)
#: Listening addresses a pod's own IP reaches.
ANY_ADDRESS = ("0.0.0.0", "::", "[::]")


class HostCheck:
    """The checks of tcpy-host's container against its own flags."""

    def __init__(
        self,
        workload: Resource,
        resources: List[Resource],
        host_flags: Optional[Set[str]],
        problems: Problems,
    ):
        self.workload = workload
        self.resources = resources
        self.problems = problems
        self.spec = pod_spec(workload)
        self.container = container(self.spec, HOST_CONTAINER) or {}
        self.base = f"spec.template.spec.containers[{HOST_CONTAINER}]"
        self.host_flags = host_flags

    def fail(self, path: str, message: str) -> None:
        self.problems.add(self.workload.at(path), message)

    def run(self) -> None:
        flags = self.flags()
        missing = [flag for flag in REQUIRED_FLAGS if flags.get(flag) is None]
        for flag in missing:
            self.fail(f"{self.base}.args", f"`{flag}` is missing (the checks below need it stated)")
        if missing:
            return
        try:
            port = int(flags["--port"])
            admin_host, colon, admin_port = flags["--admin"].rpartition(":")
            if not colon:
                raise ValueError(f"`--admin {flags['--admin']}`: want HOST:PORT")
            admin = int(admin_port)
            drain = parse_duration(flags["--drain-delay"])
            grace = parse_duration(flags["--grace"])
        except ValueError as error:
            self.fail(f"{self.base}.args", str(error))
            return
        for flag, address in (("--host", flags["--host"]), ("--admin", admin_host)):
            if address not in ANY_ADDRESS:
                self.fail(
                    f"{self.base}.args",
                    f"`{flag}` listens on {address} only: the Service and the kubelet reach the pod's own IP; use 0.0.0.0",
                )
        self.probes(admin, drain)
        self.termination(drain, grace)
        self.service(port)
        self.handlers(flags)
        self.redis(flags["--redis"])
        self.memory(flags)

    def flags(self) -> Dict[str, Optional[str]]:
        """The container's flags: `--name value`, `--name=value`, or a bare `--name`."""
        command = self.container.get("command") or []
        if command and Path(command[0]).name != "tcpy-host":
            self.fail(
                f"{self.base}.command", "must run tcpy-host (or leave it to the image's entrypoint)"
            )
        words = [str(word) for word in command[1:] + (self.container.get("args") or [])]
        flags: Dict[str, Optional[str]] = {}
        for i, word in enumerate(words):
            if not word.startswith("--"):
                continue
            name, equals, value = word.partition("=")
            if not equals:
                follows = words[i + 1] if i + 1 < len(words) else None
                value = follows if follows is not None and not follows.startswith("--") else None
            if self.host_flags is not None and name not in self.host_flags:
                self.fail(
                    f"{self.base}.args",
                    f"`{name}` is not a flag of tcpy-host (see `tcpy-host --help`)",
                )
            flags[name] = value
        return flags

    def port_number(self, ref: Any, ports: List[Dict[str, Any]]) -> Optional[int]:
        """A port given by number or by the name of one of `ports`."""
        if isinstance(ref, int):
            return ref
        return next((p.get("containerPort") for p in ports if p.get("name") == ref), None)

    def probes(self, admin: int, drain: float) -> None:
        ports = self.container.get("ports") or []
        wanted = {
            "readinessProbe": ("/readyz",),
            "livenessProbe": ("/livez",),
            "startupProbe": ("/readyz", "/livez"),
        }
        for probe, paths in wanted.items():
            spec = self.container.get(probe)
            at = f"{self.base}.{probe}"
            if spec is None:
                if probe != "startupProbe":
                    self.fail(at, f"missing: want httpGet {paths[0]} on the --admin port {admin}")
                continue
            get = spec.get("httpGet") or {}
            if get.get("path") not in paths:
                self.fail(
                    f"{at}.httpGet.path", f"is {get.get('path')!r}; want {' or '.join(paths)}"
                )
            if self.port_number(get.get("port"), ports) != admin:
                self.fail(
                    f"{at}.httpGet.port", f"{get.get('port')!r} is not the --admin port {admin}"
                )
        readiness = self.container.get("readinessProbe") or {}
        noticed = readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3)
        if noticed >= drain:
            self.fail(
                f"{self.base}.readinessProbe.periodSeconds",
                f"x failureThreshold = {noticed} s: a drain is not seen within --drain-delay ({drain:g} s)",
            )

    def termination(self, drain: float, grace: float) -> None:
        pre_stop = ((self.container.get("lifecycle") or {}).get("preStop")) or {}
        command = (pre_stop.get("exec") or {}).get("command") or []
        if "sleep" in pre_stop:
            hook = float(pre_stop["sleep"].get("seconds", 0))
        elif len(command) == 2 and Path(command[0]).name == "sleep":
            hook = parse_duration(f"{command[1]}s")
        elif pre_stop:
            self.fail(
                f"{self.base}.lifecycle.preStop",
                "cannot tell how long it takes: use a sleep, or none",
            )
            hook = 0.0
        else:
            hook = 0.0
        period = self.spec.get("terminationGracePeriodSeconds", 30)
        needed = hook + drain + grace + EXIT_MARGIN
        if period < needed:
            self.fail(
                "spec.template.spec.terminationGracePeriodSeconds",
                f"{period} s, but preStop ({hook:g} s) + --drain-delay ({drain:g} s) + --grace ({grace:g} s) + {EXIT_MARGIN} s margin = {needed:g} s: the kubelet's SIGKILL would cut the drain short",
            )

    def service(self, port: int) -> None:
        labels = (self.workload.doc["spec"]["template"].get("metadata") or {}).get("labels") or {}
        services = [
            r
            for r in self.resources
            if r.kind == "Service" and selects(r.doc["spec"].get("selector"), labels)
        ]
        if not services:
            self.fail("spec.template.metadata.labels", "no Service selects these pods")
        for service in services:
            for i, each in enumerate(service.doc["spec"].get("ports") or []):
                target = self.port_number(
                    each.get("targetPort", each.get("port")), self.container.get("ports") or []
                )
                if target != port:
                    self.problems.add(
                        service.at(f"spec.ports[{i}].targetPort"),
                        f"{each.get('targetPort')!r} is not the container's --port {port}",
                    )
                if each.get("protocol", "TCP") != "TCP":
                    self.problems.add(service.at(f"spec.ports[{i}].protocol"), "must be TCP")

    def handlers(self, flags: Dict[str, Optional[str]]) -> None:
        directory = str(flags["--handlers"]).rstrip("/")
        mounts = {
            m.get("mountPath", "").rstrip("/"): m for m in self.container.get("volumeMounts") or []
        }
        mount = mounts.get(directory)
        if mount is None:
            self.fail(
                f"{self.base}.volumeMounts", f"no volume is mounted at --handlers {directory}"
            )
            return
        volume = next(
            (v for v in self.spec.get("volumes") or [] if v.get("name") == mount.get("name")), {}
        )
        if "emptyDir" not in volume:
            self.fail(
                "spec.template.spec.volumes",
                f"`{mount.get('name')}` (mounted at --handlers) must be an emptyDir the sidecar fills",
            )
        if not mount.get("readOnly"):
            self.fail(
                f"{self.base}.volumeMounts[{mount.get('name')}].readOnly",
                "must be true: the host only reads its handlers",
            )

        def writers(kind: str) -> List[str]:
            return [
                c.get("name")
                for c in self.spec.get(kind) or []
                if c.get("name") != HOST_CONTAINER
                and any(
                    m.get("name") == mount.get("name") and not m.get("readOnly")
                    for m in c.get("volumeMounts") or []
                )
            ]

        if not writers("initContainers"):
            self.fail(
                "spec.template.spec.initContainers",
                f"no init container fills `{mount.get('name')}` (--handlers) before the host starts",
            )
        if not writers("containers"):
            self.fail(
                "spec.template.spec.containers",
                f"no sidecar keeps `{mount.get('name')}` (--handlers) in sync",
            )
        cache = flags.get("--cache-dir")
        read_only_root = (self.container.get("securityContext") or {}).get("readOnlyRootFilesystem")
        if cache is None:
            if "--no-cache" not in flags and read_only_root:
                self.fail(
                    f"{self.base}.args",
                    "give `--cache-dir` on a volume (or `--no-cache`): the root filesystem is read-only",
                )
            return
        cache_mount = mounts.get(cache.rstrip("/"))
        if cache_mount is None:
            self.fail(f"{self.base}.volumeMounts", f"no volume is mounted at --cache-dir {cache}")
            return
        for kind in ("initContainers", "containers"):
            for other in self.spec.get(kind) or []:
                if other.get("name") != HOST_CONTAINER and any(
                    m.get("name") == cache_mount.get("name")
                    for m in other.get("volumeMounts") or []
                ):
                    self.fail(
                        f"spec.template.spec.{kind}[{other.get('name')}].volumeMounts",
                        f"mounts `{cache_mount.get('name')}` (--cache-dir): the compile cache is native code the host loads, for it alone",
                    )

    def redis(self, url: str) -> None:
        at = f"{self.base}.args"
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            self.fail(at, f"`--redis {url}`: want redis://SERVICE:PORT")
            return
        name = parts.hostname.split(".")[0]
        service = next((r for r in self.resources if r.kind == "Service" and r.name == name), None)
        if service is None:
            self.fail(at, f"`--redis {url}`: no Service `{name}` here")
            return
        port = parts.port or 6379
        entry = next(
            (p for p in service.doc["spec"].get("ports") or [] if p.get("port") == port), None
        )
        if entry is None:
            self.fail(at, f"`--redis {url}`: Service `{name}` has no port {port}")
            return
        selector = service.doc["spec"].get("selector")
        backends = [
            r
            for r in self.resources
            if r.kind in WORKLOADS
            and selects(
                selector, (r.doc["spec"]["template"].get("metadata") or {}).get("labels") or {}
            )
        ]
        if not backends:
            self.problems.add(
                service.at("spec.selector"), "selects no workload here: --redis would reach nothing"
            )
            return
        backend = backends[0]
        target = entry.get("targetPort", port)
        serving = [
            c
            for c in pod_spec(backend).get("containers") or []
            if self.port_number(target, c.get("ports") or []) is not None
        ]
        if not serving:
            self.problems.add(
                service.at("spec.ports.targetPort"),
                f"{target!r} is no port of {backend.kind}/{backend.name}",
            )
            return
        words = [str(w) for w in (serving[0].get("command") or []) + (serving[0].get("args") or [])]
        if not any(w == "--appendonly" and nxt == "yes" for w, nxt in zip(words, words[1:])):
            self.problems.add(
                backend.at(f"spec.template.spec.containers[{serving[0].get('name')}].args"),
                "want `--appendonly yes`: the stores are state",
            )

    def memory(self, flags: Dict[str, Optional[str]]) -> None:
        at = f"{self.base}.resources.limits.memory"
        sized_by = ("--max-in-flight", "--memory-ceiling", "--max-connections", "--max-message")
        if any(flags.get(flag) is None for flag in sized_by):
            self.fail(
                f"{self.base}.args",
                f"state {', '.join(sized_by)}: the memory limit is sized by them",
            )
            return
        limit = (self.container.get("resources") or {}).get("limits", {}).get("memory")
        try:
            pool = int(flags["--max-in-flight"]) * parse_size(flags["--memory-ceiling"])
            buffers = int(flags["--max-connections"]) * parse_size(flags["--max-message"])
            have = parse_quantity(str(limit))
        except ValueError as error:
            self.fail(at, str(error))
            return
        needed = pool + buffers + HOST_BASELINE
        if have < needed:
            self.fail(
                at,
                f"{limit} is below --max-in-flight x --memory-ceiling + --max-connections x --max-message + {HOST_BASELINE >> 20} MiB = {needed >> 20} MiB",
            )


DURATION_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip


def parse_duration(text: str) -> float:
    """Seconds in a duration as tcpy-host reads it (humantime): `5s`, `1m 30s`, `250ms`."""
    parts = re.findall(r"\s*(\d+)\s*([a-z]+)", text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s", "", text):
        raise ValueError(f"`{text}` is not a duration like 5s or 1m")
    if any(unit not in DURATION_UNITS for _, unit in parts):
        raise ValueError(f"`{text}` has a unit humantime does not know")
    return sum(int(number) * DURATION_UNITS[unit] for number, unit in parts)


def parse_size(text: str) -> int:
    """Bytes in a size as tcpy-host reads it: `65536`, `64KiB`, `64MiB`, `1GiB` (K = KiB)."""
    match = re.fullmatch(r"(\d+)(|B|K|KiB|M|MiB|G|GiB)", text.strip())
    if match is None:
        raise ValueError(f"`{text}` is not a size like 64MiB")
    return (
        int(match[1])
        << {"": 0, "B": 0, "K": 10, "KiB": 10, "M": 20, "MiB": 20, "G": 30, "GiB": 30}[match[2]]
    )


def parse_quantity(text: str) -> int:
    """Bytes in a Kubernetes memory quantity: `512Mi`, `2Gi`, `1G`, `1e9`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|e\d+)?", text.strip())
    if match is None:
        raise ValueError(f"`{text}` is not a memory quantity like 2Gi")
    scales = {
        None: 1,
        "Ki": 1 << 10,
        "Mi": 1 << 20,
        "Gi": 1 << 30,
        "Ti": 1 << 40,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    suffix = match[2]
    scale = 10 ** int(suffix[1:]) if suffix and suffix.startswith("e") else scales[suffix]
    return int(float(match[1]) * scale)


def host_flag_names(binary: str) -> Set[str]:
    """The long flags `BINARY --help` lists."""
    help_text = subprocess.run(
        [binary, "--help"], check=True, capture_output=True, text=True
    ).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
