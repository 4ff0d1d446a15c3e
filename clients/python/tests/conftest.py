"""Real tcpy hosts for the tests: each fixture starts `tcpy-host` on a free loopback
port and stops it afterwards, every wait bounded.

The binary and the handlers come from ``TCPY_HOST_BIN`` and ``TCPY_HANDLERS`` (set by
``cargo xtask test``), defaulting to the workspace's ``target/debug/tcpy-host`` and
``target/test-handlers``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

WORKSPACE = Path(__file__).resolve().parents[3]
HOST_BIN = Path(os.environ.get("TCPY_HOST_BIN", WORKSPACE / "target/debug/tcpy-host"))
HANDLERS = Path(os.environ.get("TCPY_HANDLERS", WORKSPACE / "target/test-handlers"))
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"tcpy-host listening address=(\S+):(\d+)")


class Host:
    """A running tcpy-host: ``host`` and ``port`` to connect to."""

    def __init__(
        self, args: List[str], log: Path, cache: Path, port: int = 0, handlers: Optional[Path] = None
    ) -> None:
        if not HOST_BIN.is_file():
            pytest.fail(f"no tcpy-host at {HOST_BIN}: build it (cargo build -p tcpy-host) or set TCPY_HOST_BIN")
        if not (HANDLERS / "add.wasm").is_file():
            pytest.fail(f"no handlers in {HANDLERS}: run cargo xtask build-handlers or set TCPY_HANDLERS")
        self.log = log
        command = [
            str(HOST_BIN),
            "--handlers", str(handlers or HANDLERS),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--no-watch",
            "--cache-dir", str(cache),
            # Each host its own key-value stores: two may not share one redb file.
            "--data-dir", str(log.with_suffix(".data")),
            "--drain-delay", "0s",
            *args,
        ]  # fmt: skip
        env = dict(os.environ, NO_COLOR="1", RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self._out = open(log, "wb")
        self.process = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT, env=env)
        self.host, self.port = self._wait_listening()

    def _wait_listening(self) -> "tuple[str, int]":
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            match = _LISTENING.search(text)
            if match:
                return match.group(1), int(match.group(2))
            if self.process.poll() is not None:
                pytest.fail(f"tcpy-host exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"tcpy-host did not listen within {STARTUP_TIMEOUT}s:\n{self.log.read_text()}")

    def terminate(self) -> None:
        """SIGTERM: the host drains (``--drain-delay 0s``), then shuts down."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """Waits for the host to exit; its status, or None if it did not in time."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        self.terminate()
        if self.wait() is None:
            self.kill()
        self._out.close()


class HostFactory:
    """Starts hosts with extra flags; stops them all at teardown."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._cache = tmp / "cache"
        self._hosts: List[Host] = []

    def __call__(self, *args: str, port: int = 0, handlers: Optional[Path] = None) -> Host:
        """A host run with ``args``, on ``port`` (0: a free one), serving ``handlers``
        (default: the test handlers)."""
        log = self._tmp / f"host-{len(self._hosts)}.log"
        host = Host(list(args), log, self._cache, port, handlers)
        self._hosts.append(host)
        return host

    def stop_all(self) -> None:
        for host in self._hosts:
            host.stop()


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFactory]:
    factory = HostFactory(tmp_path_factory.mktemp("tcpy"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def host(hosts: HostFactory) -> Host:
    """A host with the default limits but a 1 s handler deadline."""
    return hosts("--timeout", "1s")


@pytest.fixture(scope="session")
def tight(hosts: HostFactory) -> Host:
    """A host with small limits, to provoke its error codes: one request at a time,
    64 KiB messages, and 1 s idle and read timeouts."""
    return hosts(
        "--max-in-flight", "1",
        "--max-message", "64KiB",
        "--idle-timeout", "1s",
        "--read-timeout", "1s",
    )  # fmt: skip


# -- TLS and tokens ------------------------------------------------------------------


class Certs:
    """Test certificates, made with the ``openssl`` CLI in a temp dir (EC P-256, valid
    two days): a CA; a host certificate it signs, for ``localhost`` and ``127.0.0.1``;
    a client certificate it signs, CN ``ops``; and another CA, self-signed, that
    signed nothing the hosts use."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("the TLS tests need the openssl CLI (Debian: apt-get install openssl)")
        self._openssl = openssl
        self.ca, self.ca_key = self._make("ca", "tcpy-test-ca", ca=True)
        self.server, self.server_key = self._make(
            "server", "localhost", signer=("ca", "ca"), san="DNS:localhost,IP:127.0.0.1", usage="serverAuth"
        )
        self.client, self.client_key = self._make("ops", "ops", signer=("ca", "ca"), usage="clientAuth")
        self.other_ca, _ = self._make("other-ca", "tcpy-other-ca", ca=True)

    def _make(
        self,
        name: str,
        cn: str,
        *,
        ca: bool = False,
        signer: "Optional[tuple[str, str]]" = None,
        san: Optional[str] = None,
        usage: Optional[str] = None,
    ) -> "tuple[Path, Path]":
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        command = [
            self._openssl, "req", "-x509", "-new",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
        ]  # fmt: skip
        if ca:
            command += ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        else:
            command += ["-addext", "basicConstraints=critical,CA:FALSE"]
        if signer is not None:
            command += ["-CA", str(self.dir / f"{signer[0]}.pem"), "-CAkey", str(self.dir / f"{signer[1]}.key")]
        if san is not None:
            command += ["-addext", f"subjectAltName={san}"]
        if usage is not None:
            command += ["-addext", f"extendedKeyUsage={usage}"]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if done.returncode != 0:
            pytest.fail(f"openssl failed ({' '.join(command)}):\n{done.stderr.decode(errors='replace')}")
        return cert, key


#: The tokens of the token host: identity = token.
TOKENS: Dict[str, str] = {
    "billing": "billing-0123456789abcdef",
    "ops": "ops-0123456789abcdef-ops",
}


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls_host(hosts: HostFactory, certs: Certs) -> Host:
    """A host that serves TLS, with the test certificate for localhost/127.0.0.1."""
    return hosts("--tls-cert", str(certs.server), "--tls-key", str(certs.server_key))


@pytest.fixture(scope="session")
def mtls_host(hosts: HostFactory, certs: Certs) -> Host:
    """A TLS host that requires client certificates signed by the test CA."""
    return hosts(
        "--tls-cert", str(certs.server), "--tls-key", str(certs.server_key),
        "--tls-client-ca", str(certs.ca),
    )  # fmt: skip


@pytest.fixture(scope="session")
def token_host(hosts: HostFactory, certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Host:
    """A TLS host that asks for tokens (``TOKENS``), serving ``add``, which only
    ``billing`` may run (``[access] allow = ["billing"]``), and ``tally``, open to all."""
    handlers = tmp_path_factory.mktemp("handlers")
    shutil.copy(HANDLERS / "add.wasm", handlers / "add.wasm")
    shutil.copy(HANDLERS / "tally.wasm", handlers / "tally.wasm")
    (handlers / "add.toml").write_text('[access]\nallow = ["billing"]\n')
    tokens = handlers.parent / f"{handlers.name}-tokens.toml"
    tokens.write_text("".join(f'{identity} = "{token}"\n' for identity, token in TOKENS.items()))
    return hosts(
        "--tls-cert", str(certs.server), "--tls-key", str(certs.server_key),
        "--auth-tokens", str(tokens),
        handlers=handlers,
    )  # fmt: skip
