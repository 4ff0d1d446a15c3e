"""TLS, client certificates, tokens and access lists, against real hosts (conftest:
``tls_host``, ``mtls_host``, ``token_host``) with certificates made by openssl."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from typing import Any, Coroutine, TypeVar

import pytest

import tcpy
from tcpy import AsyncClient, TCPClient

from conftest import TOKENS, Certs, Host

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def trusting(certs: Certs, *, client_cert: bool = False) -> ssl.SSLContext:
    if client_cert:
        return tcpy.tls_context(ca=certs.ca, cert=certs.client, key=certs.client_key)
    return tcpy.tls_context(ca=certs.ca)


def client_of(host: Host, **options: Any) -> TCPClient:
    options.setdefault("timeout", 10.0)
    return TCPClient(host.host, host.port, **options)


def async_client_of(host: Host, **options: Any) -> AsyncClient:
    options.setdefault("timeout", 10.0)
    return AsyncClient(host.host, host.port, **options)


# -- the context -----------------------------------------------------------------------


def test_tls_context_verifies_the_host(certs: Certs) -> None:
    context = trusting(certs, client_cert=True)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_tls_context_names_a_bad_file(certs: Certs) -> None:
    with pytest.raises(tcpy.TLSError, match="no-such-ca.pem"):
        tcpy.tls_context(ca=certs.dir / "no-such-ca.pem")
    with pytest.raises(tcpy.TLSError, match="client certificate"):
        # The key is not the certificate's.
        tcpy.tls_context(ca=certs.ca, cert=certs.client, key=certs.server_key)
    with pytest.raises(ValueError):
        tcpy.tls_context(ca=certs.ca, key=certs.client_key)


def test_options_are_checked() -> None:
    with pytest.raises(TypeError):
        TCPClient(tls="ca.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TCPClient(server_hostname="localhost")  # without tls
    with pytest.raises(ValueError):
        AsyncClient(token="")


# -- TLS -----------------------------------------------------------------------------------


def test_add_over_tls(tls_host: Host, certs: Certs) -> None:
    with client_of(tls_host, tls=trusting(certs)) as client:
        assert client.execute(cmd="add", x=1, y=2) == {"solution": 3, "success": True}
        sock = client.socket
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        assert client.call("add", x=40, y=2)["solution"] == 42
        assert client.socket is sock  # one connection for both
        # The 2014 raw protocol runs inside TLS too.
        client.send({"cmd": "add", "x": 20, "y": 22})
        assert client.recv() == {"solution": 42, "success": True}


def test_a_conversation_over_tls(tls_host: Host, certs: Certs) -> None:
    with client_of(tls_host, tls=trusting(certs)) as client:
        with client.conversation("tally", start=10) as tally:
            tally.send({"n": 5})
            assert tally.recv() == {"total": 15}
            tally.send({"done": True})
            assert tally.recv() == {"count": 1, "success": True, "total": 15}
        assert client.call("add", x=1, y=1)["solution"] == 2


def test_close_send_is_refused_over_tls(tls_host: Host, certs: Certs) -> None:
    with client_of(tls_host, tls=trusting(certs)) as client:
        tally = client.conversation("tally", start=1)
        with pytest.raises(tcpy.TCPError, match="not available over TLS"):
            tally.close_send()
        tally.send({"n": 1})  # the conversation goes on
        assert tally.recv() == {"total": 2}
        tally.send({"done": True})
        assert tally.wait()["total"] == 2


def test_server_hostname_checks_another_name(tls_host: Host, certs: Certs) -> None:
    # By address, checked against the certificate's DNS name.
    with client_of(tls_host, tls=trusting(certs), server_hostname="localhost") as client:
        assert client.call("add", x=1, y=2)["solution"] == 3
    with client_of(tls_host, tls=trusting(certs), server_hostname="tcpy.example") as client:
        with pytest.raises(tcpy.TLSError, match="not valid for 'tcpy.example'"):
            client.call("add", x=1, y=2)
        assert not client.connected


def test_an_untrusted_host_certificate_is_a_tls_error(tls_host: Host, certs: Certs) -> None:
    client = client_of(tls_host, tls=tcpy.tls_context(ca=certs.other_ca))
    with pytest.raises(tcpy.TLSError) as caught:
        client.execute("add", x=1, y=2)
    assert "certificate did not verify" in str(caught.value)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert not client.connected
    # The system's CAs do not know the test CA either.
    with pytest.raises(tcpy.TLSError, match="did not verify"):
        client_of(tls_host, tls=True).connect()


def test_a_plaintext_client_on_a_tls_port_is_dropped(tls_host: Host) -> None:
    # The host answers the plaintext request with a TLS alert, and closes.
    with client_of(tls_host, timeout=5.0) as client:
        with pytest.raises(tcpy.TLSError, match="the server answered with TLS"):
            client.execute("add", x=1, y=2)
        assert not client.connected


def test_a_tls_client_on_a_plaintext_port_is_a_tls_error(host: Host, certs: Certs) -> None:
    with pytest.raises(tcpy.TLSError, match="TLS handshake"):
        client_of(host, tls=trusting(certs)).connect()


def test_client_certificates(mtls_host: Host, certs: Certs) -> None:
    with client_of(mtls_host, tls=trusting(certs, client_cert=True)) as client:
        assert client.call("add", x=1, y=2)["solution"] == 3
        assert client.call("add", x=2, y=2)["solution"] == 4
    # Without one: with TLS 1.3 the host's alert comes after the handshake, on the
    # first read.
    client = client_of(mtls_host, tls=trusting(certs))
    with pytest.raises(tcpy.TLSError, match="certificate required"):
        client.execute("add", x=1, y=2)
    assert not client.connected
    # One the host's CA did not sign: the handshake fails.
    wrong = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    wrong.load_verify_locations(cafile=str(certs.ca))
    wrong.load_cert_chain(str(certs.other_ca), str(certs.dir / "other-ca.key"))
    with pytest.raises(tcpy.TLSError):
        client_of(mtls_host, tls=wrong).execute("add", x=1, y=2)


# -- tokens and access lists ----------------------------------------------------------------


def test_no_token_is_unauthorized(token_host: Host, certs: Certs) -> None:
    client = client_of(token_host, tls=trusting(certs))
    response = client.execute("add", x=1, y=2)  # the 2014 API: the response as it came
    assert response["error"] is True and response["code"] == "unauthorized"
    assert not client.connected  # the host closes the connection after it
    with pytest.raises(tcpy.Unauthorized) as caught:
        client.call("add", x=1, y=2)
    assert isinstance(caught.value, tcpy.ServerError) and caught.value.code == "unauthorized"


def test_a_wrong_token_is_unauthorized(token_host: Host, certs: Certs) -> None:
    client = client_of(token_host, tls=trusting(certs), token="not-a-token-of-this-host")
    with pytest.raises(tcpy.Unauthorized) as caught:
        client.connect()
    assert caught.value.message == "unknown token"
    assert not client.connected
    with pytest.raises(tcpy.Unauthorized):
        client.execute("add", x=1, y=2)  # execute connects, so it raises too


def test_the_right_token_works_on_the_connection_and_each_new_one(token_host: Host, certs: Certs) -> None:
    with client_of(token_host, tls=trusting(certs), token=TOKENS["billing"]) as client:
        assert client.call("add", x=1, y=2)["solution"] == 3
        assert client.identity == "billing"
        sock = client.socket
        assert client.call("add", x=2, y=3)["solution"] == 5
        assert client.socket is sock  # the same connection, authenticated once
        client.disconnect()
        assert client.execute(cmd="add", x=3, y=4)["solution"] == 7  # a new one, authenticated again
        assert client.socket is not sock
        # The raw protocol after connect(), which authenticates.
        client.disconnect()
        client.connect()
        client.send({"cmd": "add", "x": 1, "y": 1})
        assert client.recv() == {"solution": 2, "success": True}


def test_a_token_with_msgpack_frames(token_host: Host, certs: Certs) -> None:
    pytest.importorskip("msgpack")
    with client_of(token_host, tls=trusting(certs), token=TOKENS["billing"], encoding="msgpack") as client:
        assert client.call("add", x=1, y=2)["solution"] == 3


def test_forbidden_by_the_access_list(token_host: Host, certs: Certs) -> None:
    with client_of(token_host, tls=trusting(certs), token=TOKENS["ops"]) as client:
        with pytest.raises(tcpy.Forbidden) as caught:
            client.call("add", x=1, y=2)
        assert caught.value.code == "forbidden" and "`ops` may not run `add`" in caught.value.message
        assert client.identity == "ops"
        sock = client.socket
        # The connection stays open; handlers without an access list still run.
        with client.conversation("tally", start=1) as tally:
            tally.send({"done": True})
            assert tally.recv()["total"] == 1
        assert client.socket is sock


def test_the_auth_message_by_hand(token_host: Host, certs: Certs) -> None:
    # What the client does: the protocol's auth message first, then requests as usual.
    raw = socket.create_connection((token_host.host, token_host.port), timeout=10)
    with trusting(certs).wrap_socket(raw, server_hostname=token_host.host) as sock:
        answers = []
        auth = b'{"cmd":"auth","token":"%s"}' % TOKENS["ops"].encode()
        for messages in ([auth], [b'{"cmd":"tally","start":1}', b'{"done":true}']):
            for message in messages:
                sock.sendall(struct.pack(">I", len(message)) + message)
            (length,) = struct.unpack(">I", _read(sock, 4))
            answers.append(_read(sock, length))
    assert answers == [b'{"identity":"ops","success":true}', b'{"count":0,"success":true,"total":1}']


def _read(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the host closed the connection"
        data += chunk
    return data


# -- the same with asyncio -------------------------------------------------------------------


def test_async_add_and_a_conversation_over_tls(tls_host: Host, certs: Certs) -> None:
    async def main() -> None:
        async with async_client_of(tls_host, tls=trusting(certs)) as client:
            assert await client.execute("add", x=1, y=2) == {"solution": 3, "success": True}
            async with await client.conversation("tally", start=10) as tally:
                await tally.send({"n": 5})
                assert await tally.recv() == {"total": 15}
                await tally.send({"done": True})
                assert await tally.recv() == {"count": 1, "success": True, "total": 15}
            with pytest.raises(tcpy.TCPError, match="not available over TLS"):
                await (await client.conversation("tally")).close_send()

    run(main())


def test_async_untrusted_host_certificate(tls_host: Host, certs: Certs) -> None:
    async def main() -> None:
        client = async_client_of(tls_host, tls=tcpy.tls_context(ca=certs.other_ca))
        with pytest.raises(tcpy.TLSError, match="certificate did not verify") as caught:
            await client.execute("add", x=1, y=2)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        assert not client.connected

    run(main())


def test_async_client_certificates(mtls_host: Host, certs: Certs) -> None:
    async def main() -> None:
        async with async_client_of(mtls_host, tls=trusting(certs, client_cert=True)) as client:
            assert (await client.call("add", x=1, y=2))["solution"] == 3
            assert (await client.call("add", x=2, y=2))["solution"] == 4
        client = async_client_of(mtls_host, tls=trusting(certs))
        with pytest.raises(tcpy.TLSError, match="certificate required"):
            await client.execute("add", x=1, y=2)
        assert not client.connected

    run(main())


def test_async_tokens_and_access_lists(token_host: Host, certs: Certs) -> None:
    async def main() -> None:
        async with async_client_of(token_host, tls=trusting(certs)) as client:
            with pytest.raises(tcpy.Unauthorized):
                await client.call("add", x=1, y=2)
            assert not client.connected
        async with async_client_of(token_host, tls=trusting(certs), token="not-a-token-of-this-host") as client:
            with pytest.raises(tcpy.Unauthorized, match="unknown token"):
                await client.connect()
            assert not client.connected
        async with async_client_of(token_host, tls=trusting(certs), token=TOKENS["billing"]) as client:
            assert (await client.call("add", x=1, y=2))["solution"] == 3
            assert client.identity == "billing"
            conn = client._conn
            assert (await client.call("add", x=2, y=3))["solution"] == 5
            assert client._conn is conn
        async with async_client_of(token_host, tls=trusting(certs), token=TOKENS["ops"]) as client:
            with pytest.raises(tcpy.Forbidden):
                await client.call("add", x=1, y=2)
            conn = client._conn
            assert conn is not None
            async with await client.conversation("tally", start=2) as tally:
                await tally.send({"done": True})
                assert (await tally.wait())["total"] == 2
            assert client._conn is conn

    run(main())
