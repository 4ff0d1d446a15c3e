// TLS, client certificates, tokens and access lists, against real hosts with
// certificates made by openssl (test/host.js: makeCerts).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';

import { Client, ServerError, TcpyError, TlsError } from '../index.js';
import { handlersDir, makeCerts, startHost, tempDir } from './host.js';

const TOKENS = { billing: 'billing-0123456789abcdef', ops: 'ops-0123456789abcdef-ops' };

let certs;
let plain; // no TLS
let tlsHost; // TLS with the test certificate for localhost/127.0.0.1
let mtlsHost; // TLS, client certificates signed by the test CA required
let tokenHost; // TLS and tokens; `add` only for billing, `tally` for all

before(async () => {
  certs = makeCerts();
  const serving = ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key];
  const tokens = path.join(tempDir('tcpy-js-tokens-'), 'tokens.toml');
  writeFileSync(tokens, Object.entries(TOKENS).map(([identity, token]) => `${identity} = "${token}"\n`).join(''));
  [plain, tlsHost, mtlsHost, tokenHost] = await Promise.all([
    startHost([]),
    startHost(serving),
    startHost([...serving, '--tls-client-ca', certs.ca.cert]),
    startHost([...serving, '--auth-tokens', tokens], {
      handlers: handlersDir({ 'add.toml': '[access]\nallow = ["billing"]\n' }),
    }),
  ]);
});

after(async () => {
  await Promise.all([plain?.stop(), tlsHost?.stop(), mtlsHost?.stop(), tokenHost?.stop()]);
});

const trusting = ({ clientCert = false, ...rest } = {}) => ({
  ca: readFileSync(certs.ca.cert),
  ...(clientCert ? { cert: readFileSync(certs.client.cert), key: readFileSync(certs.client.key, 'utf8') } : {}),
  ...rest,
});

const clientOf = (h, options = {}) => new Client({ host: h.host, port: h.port, timeout: 10_000, ...options });

async function withClient(h, options, body) {
  const client = clientOf(h, options);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

describe('options', () => {
  test('tls and token are checked', () => {
    assert.throws(() => new Client({ tls: 'ca.pem' }), TypeError);
    assert.throws(() => new Client({ tls: { cert: 'x' } }), TypeError);
    assert.throws(() => new Client({ token: '' }), TypeError);
    assert.equal(new Client().tls, false);
    assert.equal(new Client({ tls: true }).tls, true);
  });
});

describe('TLS', () => {
  test('add round trip, and the raw protocol, over TLS', async () => {
    await withClient(tlsHost, { tls: trusting() }, async (client) => {
      assert.deepEqual(await client.execute('add', { x: 1, y: 2 }), { solution: 3, success: true });
      const socket = client.socket;
      assert.ok(socket instanceof TLSSocket);
      assert.match(socket.getProtocol(), /^TLSv1\.[23]$/);
      assert.equal((await client.call('add', { x: 40, y: 2 })).solution, 42);
      assert.equal(client.socket, socket); // one connection for both
      await client.send({ cmd: 'add', x: 20, y: 22 });
      assert.deepEqual(await client.recv(), { solution: 42, success: true });
    });
  });

  test('a conversation over TLS, and closeSend', async () => {
    await withClient(tlsHost, { tls: trusting() }, async (client) => {
      const tally = await client.conversation('tally', { start: 10 });
      await tally.send({ n: 5 });
      assert.deepEqual(await tally.recv(), { total: 15 });
      await tally.send({ done: true });
      assert.deepEqual(await tally.recv(), { count: 1, success: true, total: 15 });
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
      // Half-closing works inside TLS (close_notify): the handler's recv() sees the end.
      const closing = await client.conversation('tally', { start: 1 });
      await closing.send({ n: 1 });
      await closing.closeSend();
      assert.deepEqual(await closing.recv(), { total: 2 });
      assert.deepEqual(await closing.wait(), { count: 1, success: true, total: 2 });
      assert.equal(client.connected, false);
    });
  });

  test('PEM strings work as well as Buffers, and servername checks another name', async () => {
    const ca = readFileSync(certs.ca.cert, 'utf8');
    await withClient(tlsHost, { tls: { ca, servername: 'localhost' } }, async (client) => {
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
    });
    await withClient(tlsHost, { tls: { ca, servername: 'tcpy.example' } }, async (client) => {
      await assert.rejects(client.call('add', { x: 1, y: 2 }), (error) => {
        assert.ok(error instanceof TlsError);
        assert.equal(error.cause.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
        return true;
      });
      assert.equal(client.connected, false);
    });
  });

  test('an untrusted host certificate is a TlsError', async () => {
    await withClient(tlsHost, { tls: { ca: readFileSync(certs.otherCa.cert) } }, async (client) => {
      await assert.rejects(client.execute('add', { x: 1, y: 2 }), (error) => {
        assert.ok(error instanceof TlsError && error instanceof TcpyError);
        assert.equal(error.code, 'TCPY_TLS');
        assert.match(error.message, /^TLS handshake with 127\.0\.0\.1:\d+ failed: the host's certificate did not verify/);
        assert.equal(error.cause.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
        return true;
      });
      assert.equal(client.connected, false);
    });
    // Node's own CAs do not know the test CA either.
    await withClient(tlsHost, { tls: true }, async (client) => {
      await assert.rejects(client.connect(), TlsError);
    });
  });

  test('a plaintext client on a TLS port, and a TLS client on a plaintext one', async () => {
    await withClient(tlsHost, {}, async (client) => {
      await assert.rejects(client.execute('add', { x: 1, y: 2 }), /the server answered with TLS/);
      assert.equal(client.connected, false);
    });
    await withClient(plain, { tls: trusting() }, async (client) => {
      await assert.rejects(client.connect(), TlsError);
    });
  });

  test('client certificates: with one it works, without one it fails', async () => {
    await withClient(mtlsHost, { tls: trusting({ clientCert: true }) }, async (client) => {
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
      assert.equal((await client.call('add', { x: 2, y: 2 })).solution, 4);
    });
    // With TLS 1.3 the host's alert comes after the handshake, on the first read.
    await withClient(mtlsHost, { tls: trusting() }, async (client) => {
      await assert.rejects(client.execute('add', { x: 1, y: 2 }), (error) => {
        assert.ok(error instanceof TlsError, `${error}`);
        assert.match(error.message, /certificate required/);
        return true;
      });
      assert.equal(client.connected, false);
    });
    // One the host's CA did not sign.
    const stranger = { ca: readFileSync(certs.ca.cert), cert: readFileSync(certs.otherCa.cert), key: readFileSync(certs.otherCa.key) };
    await withClient(mtlsHost, { tls: stranger }, async (client) => {
      await assert.rejects(client.execute('add', { x: 1, y: 2 }), TlsError);
    });
  });
});

describe('tokens and access lists', () => {
  test('no token: unauthorized, and the connection is closed', async () => {
    await withClient(tokenHost, { tls: trusting() }, async (client) => {
      const response = await client.execute('add', { x: 1, y: 2 });
      assert.equal(response.error, true);
      assert.equal(response.code, 'unauthorized');
      assert.equal(client.connected, false);
      await assert.rejects(client.call('add', { x: 1, y: 2 }), (error) => {
        assert.ok(error instanceof ServerError);
        assert.equal(error.code, 'unauthorized');
        return true;
      });
    });
  });

  test('a wrong token: unauthorized', async () => {
    await withClient(tokenHost, { tls: trusting(), token: 'not-a-token-of-this-host' }, async (client) => {
      await assert.rejects(client.connect(), (error) => {
        assert.ok(error instanceof ServerError);
        assert.equal(error.code, 'unauthorized');
        assert.equal(error.serverMessage, 'unknown token');
        return true;
      });
      assert.equal(client.connected, false);
      await assert.rejects(client.execute('add', { x: 1, y: 2 }), { code: 'unauthorized' });
    });
  });

  test('the right token: works on its connection and on each new one', async () => {
    await withClient(tokenHost, { tls: trusting(), token: TOKENS.billing }, async (client) => {
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
      assert.equal(client.identity, 'billing');
      const socket = client.socket;
      assert.equal((await client.call('add', { x: 2, y: 3 })).solution, 5);
      assert.equal(client.socket, socket); // authenticated once, then requests as usual
      client.close();
      assert.equal((await client.call('add', { x: 3, y: 4 })).solution, 7); // a new connection, authenticated again
      assert.notEqual(client.socket, socket);
      client.close();
      await client.connect(); // the raw protocol after connect(), which authenticates
      await client.send({ cmd: 'add', x: 1, y: 1 });
      assert.deepEqual(await client.recv(), { solution: 2, success: true });
    });
  });

  test('forbidden by the access list; the connection stays open', async () => {
    await withClient(tokenHost, { tls: trusting(), token: TOKENS.ops }, async (client) => {
      await assert.rejects(client.call('add', { x: 1, y: 2 }), (error) => {
        assert.ok(error instanceof ServerError);
        assert.equal(error.code, 'forbidden');
        assert.match(error.serverMessage, /`ops` may not run `add`/);
        assert.equal(error.notRun, false);
        return true;
      });
      assert.equal(client.identity, 'ops');
      const socket = client.socket;
      const tally = await client.conversation('tally', { start: 1 });
      await tally.send({ done: true });
      assert.equal((await tally.wait()).total, 1);
      assert.equal(client.socket, socket);
    });
  });
});
