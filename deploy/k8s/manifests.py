"""The manifests as check.py reads them: the kustomization, each file's documents, and
the problems found in them, each naming its file, resource and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

#: The name of tcpy-host's container, in whichever workload runs it.
HOST_CONTAINER = "tcpy-host"
#: The kinds whose pod template the checks read.
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass
class Manifests:
    """A directory's kustomization and the documents of each of its YAML files."""

    kustomization: Dict[str, Any]
    files: Dict[str, List[Dict[str, Any]]]


@dataclass
class Resource:
    """One document, and the file it came from."""

    file: str
    doc: Dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name"))

    def at(self, path: str) -> str:
        """Where a problem is: ``FILE: KIND/NAME: FIELD``."""
        return f"{self.file}: {self.kind}/{self.name}: {path}"


@dataclass
class Problems:
    """The problems found, one line each."""

    lines: List[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")


def load(directory: Path) -> Manifests:
    """Reads ``kustomization.yaml`` and every other ``*.yaml`` of ``directory``."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files = {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(directory.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }
    return Manifests(kustomization, files)


def pod_spec(workload: Resource) -> Dict[str, Any]:
    return ((workload.doc.get("spec") or {}).get("template") or {}).get("spec") or {}


def container(spec: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    return next((c for c in spec.get("containers") or [] if c.get("name") == name), None)


def selects(selector: Optional[Dict[str, str]], labels: Dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())
