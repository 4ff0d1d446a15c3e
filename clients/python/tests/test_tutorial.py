"""The 2014 tutorial's client lines, run verbatim (with Python 3's print) against `add`
on the default localhost:7272."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WORKSPACE, HostFactory

# The client block of the tcpy 0.0.1 tutorial, and what it says it outputs.
TUTORIAL_CLIENT = '''# Client
from tcpy import TCPClient

print TCPClient().execute(cmd="add", x=1, y=2)
'''
TUTORIAL_OUTPUT = "{'solution': 3, 'success': True}"
# The 2014 documentation, kept in the repository for reference.
DOCS = WORKSPACE / "docs" / "history" / "tcpy-0.0.1-docs.txt"


def python3(source: str) -> str:
    """The 2014 lines in Python 3: `print X` becomes `print(X)`, nothing else."""
    return re.sub(r"^print (.+)$", r"print(\1)", source, flags=re.MULTILINE)


def test_the_lines_are_the_documented_ones() -> None:
    docs = DOCS.read_text()
    assert "from tcpy import TCPClient\n\nprint TCPClient().execute(cmd=\"add\", x=1, y=2)" in docs
    assert f"Which outputs: {TUTORIAL_OUTPUT}." in docs


def test_2014_client_lines_run_unchanged(hosts: HostFactory, tmp_path: Path) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 7272))
        except OSError:
            pytest.skip("port 7272 is taken: the 2014 lines connect to localhost:7272")
    default = hosts(port=7272)
    try:
        script = tmp_path / "client.py"
        script.write_text(python3(TUTORIAL_CLIENT))
        src = Path(__file__).resolve().parents[1] / "src"
        env = dict(os.environ, PYTHONPATH=str(src))
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=30
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == TUTORIAL_OUTPUT + "\n"
    finally:
        default.stop()
