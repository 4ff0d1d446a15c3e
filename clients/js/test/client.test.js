// The JavaScript client against a real host.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import {
  Client,
  ClientBusy,
  ConnectError,
  ConnectionClosed,
  ConnectionFailed,
  ConversationOver,
  EncodeError,
  InvalidParams,
  MessageTooLarge,
  NotConnected,
  SendClosed,
  ServerError,
  TcpyError,
  TimeoutError,
  UnexpectedMessage,
  isResponse,
} from '../index.js';
import { sleep, startHost } from './host.js';

let host; // defaults, but a 1 s handler deadline
let tight; // one request at a time, 64 KiB messages, 1 s idle and read timeouts

before(async () => {
  host = await startHost(['--timeout', '1s']);
  tight = await startHost(['--max-in-flight', '1', '--max-message', '64KiB', '--idle-timeout', '1s', '--read-timeout', '1s']);
});

after(async () => {
  await Promise.all([host?.stop(), tight?.stop()]);
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

describe('add', () => {
  test('execute resolves to the response as it came', async () => {
    await withClient(host, {}, async (client) => {
      const response = await client.execute('add', { x: 1, y: 2 });
      assert.deepEqual(response, { solution: 3, success: true });
      assert.deepEqual(Object.keys(response), ['solution', 'success']);
      assert.ok(isResponse(response));
    });
  });

  test('connect, send, recv, close: the raw protocol', async () => {
    const client = clientOf(host);
    await assert.rejects(client.send({ cmd: 'add' }), NotConnected);
    await assert.rejects(client.recv(), NotConnected);
    await client.connect();
    assert.ok(client.connected);
    await client.send({ cmd: 'add', x: 20, y: 22 });
    assert.deepEqual(await client.recv(), { solution: 42, success: true });
    client.close();
    client.close();
    assert.equal(client.connected, false);
    // execute connects again by itself
    assert.equal((await client.call('add', { x: 2, y: 2 })).solution, 4);
    client.disconnect();
  });

  test('unicode and nested params round-trip', async () => {
    await withClient(host, {}, async (client) => {
      const params = { text: 'héllo ✓ 🎉', nested: { list: [1, 2.5, null, true] } };
      const response = await client.call('echo', params);
      assert.deepEqual(response, { ...params, success: true });
    });
  });

  test('invalid requests are refused before anything is sent', async () => {
    const client = clientOf(host);
    await assert.rejects(client.execute(42), InvalidParams);
    await assert.rejects(client.execute('add', [1, 2]), InvalidParams);
    await assert.rejects(client.execute('add', { cmd: 'other' }), InvalidParams);
    await assert.rejects(client.execute('echo', { big: 10n }), EncodeError);
    assert.equal(client.connected, false);
    assert.throws(() => new Client({ timeout: 0 }), RangeError);
    assert.throws(() => new Client({ port: 70000 }), RangeError);
  });
});

describe('host error codes', () => {
  test('unknown_command: execute returns it, call throws it, the connection stays', async () => {
    await withClient(host, {}, async (client) => {
      const response = await client.execute('no_such_command');
      assert.equal(response.error, true);
      assert.equal(response.code, 'unknown_command');
      const socket = client.socket;
      const error = await client.call('no_such_command').catch((e) => e);
      assert.ok(error instanceof ServerError && error instanceof TcpyError);
      assert.equal(error.code, 'unknown_command');
      assert.match(error.serverMessage, /no_such_command/);
      assert.equal(error.notRun, false);
      assert.equal(error.response.error, true);
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
      assert.equal(client.socket, socket);
    });
  });

  test('bad_request from the handler and from the host', async () => {
    await withClient(host, {}, async (client) => {
      await assert.rejects(client.call('add', { x: 1 }), { name: 'ServerError', code: 'bad_request' });
      await client.send({ x: 1 });
      const response = await client.recv();
      assert.equal(response.code, 'bad_request');
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
    });
  });

  test('handler_failed', async () => {
    await withClient(host, {}, async (client) => {
      for (const mode of ['panic', 'unreachable', 'not_object', 'no_marker']) {
        await assert.rejects(client.call('misbehave', { do: mode }), { code: 'handler_failed' }, mode);
      }
      assert.equal((await client.call('add', { x: 2, y: 2 })).solution, 4);
    });
  });

  test('timeout (the handler past its deadline)', async () => {
    await withClient(host, {}, async (client) => {
      const started = Date.now();
      await assert.rejects(client.call('misbehave', { do: 'loop' }), { code: 'timeout' });
      assert.ok(Date.now() - started < 8000);
      assert.equal((await client.call('add', { x: 3, y: 3 })).solution, 6);
    });
  });

  test('too_large response keeps the connection', async () => {
    await withClient(host, { maxMessage: 4 << 20 }, async (client) => {
      await assert.rejects(client.call('misbehave', { do: 'huge', mib: 2 }), { code: 'too_large' });
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
    });
  });

  test('too_large request: the host closes, the next request reconnects', async () => {
    await withClient(tight, {}, async (client) => {
      const error = await client.call('echo', { pad: 'x'.repeat(100_000) }).catch((e) => e);
      assert.equal(error.code, 'too_large');
      assert.match(error.serverMessage, /65536/);
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
    });
  });

  test('the local limit: nothing too large is sent, nothing too large is read', async () => {
    await withClient(host, { maxMessage: 1000 }, async (client) => {
      await assert.rejects(client.execute('echo', { pad: 'x'.repeat(2000) }), MessageTooLarge);
      assert.equal(client.connected, false);
      // echo answers its params with "success":true instead of "cmd":"echo": 2 bytes more.
      const pad = 'x'.repeat(1000 - '{"cmd":"echo","pad":""}'.length);
      const error = await client.execute('echo', { pad }).catch((e) => e);
      assert.ok(error instanceof MessageTooLarge, String(error));
      assert.equal(error.size, 1002);
      assert.equal(client.connected, false);
    });
  });

  test('busy when the pool is full', async () => {
    const sleeper = clientOf(tight);
    const other = clientOf(tight);
    try {
      const sleeping = (async () => {
        // The other client's add may hold the only slot for a moment.
        for (let i = 0; i < 100; i++) {
          const response = await sleeper.execute('misbehave', { do: 'sleep', ms: 1000 });
          if (response.code !== 'busy') return response;
          await sleep(10);
        }
        return null;
      })();
      await sleep(100);
      let busy = null;
      for (let i = 0; i < 100 && busy === null; i++) {
        const response = await other.execute('add', { x: 1, y: 1 });
        if (response.code === 'busy') busy = new ServerError(response);
        else await sleep(20);
      }
      assert.ok(busy !== null, 'never got busy with the only slot taken');
      assert.equal(busy.notRun, true);
      assert.deepEqual(await sleeping, { slept_ms: 1000, success: true });
      assert.equal((await other.call('add', { x: 1, y: 1 })).solution, 2);
    } finally {
      sleeper.close();
      other.close();
    }
  });

  test('busy when connections are full', async () => {
    const limited = await startHost(['--max-connections', '1']);
    const first = clientOf(limited);
    const second = clientOf(limited);
    try {
      assert.equal((await first.call('add', { x: 1, y: 1 })).solution, 2);
      await assert.rejects(second.call('add', { x: 1, y: 1 }), { code: 'busy', notRun: true });
      first.close();
      let response;
      for (let i = 0; i < 100; i++) {
        response = await second.execute('add', { x: 2, y: 2 });
        if (response.success) break;
        await sleep(50);
      }
      assert.deepEqual(response, { solution: 4, success: true });
    } finally {
      first.close();
      second.close();
      await limited.stop();
    }
  });

  test('idle_timeout: the unasked last word, and execute resends', async () => {
    await withClient(tight, {}, async (client) => {
      await client.connect();
      const started = Date.now();
      const last = await client.recv();
      assert.equal(last.code, 'idle_timeout');
      assert.ok(Date.now() - started > 500);
      await assert.rejects(client.recv(), ConnectionClosed);
      assert.equal(client.connected, false);
    });
    await withClient(tight, {}, async (client) => {
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
      const first = client.socket;
      await sleep(1500);
      assert.equal((await client.call('add', { x: 2, y: 3 })).solution, 5);
      assert.notEqual(client.socket, first);
    });
  });

  test('read_timeout on a message cut short', async () => {
    await withClient(tight, {}, async (client) => {
      await client.connect();
      const header = Buffer.alloc(4);
      header.writeUInt32BE(50);
      client.socket.write(Buffer.concat([header, Buffer.from('{"cmd":')]));
      const response = await client.recv();
      assert.equal(response.code, 'read_timeout');
      await assert.rejects(client.recv(), ConnectionClosed);
    });
  });

  test('shutting_down', async () => {
    const doomed = await startHost();
    const idle = clientOf(doomed);
    const kept = clientOf(doomed);
    try {
      // A request first, so the host has surely accepted the connection.
      assert.equal((await idle.call('add', { x: 1, y: 1 })).solution, 2);
      assert.equal((await kept.call('add', { x: 1, y: 1 })).solution, 2);
      doomed.terminate();
      const last = await idle.recv();
      assert.equal(last.code, 'shutting_down');
      assert.ok(await doomed.waitExit(), 'the host did not exit');
      // On the kept connection the answer is shutting_down; the client tries once more
      // on a new connection, which is refused, so that answer stands.
      const response = await kept.execute('add', { x: 1, y: 1 });
      assert.equal(response.code, 'shutting_down');
      assert.equal(kept.connected, false);
      await assert.rejects(kept.call('add', { x: 1, y: 1 }), ConnectError);
    } finally {
      idle.close();
      kept.close();
      await doomed.stop();
    }
  });
});

describe('conversations', () => {
  test('tally', async () => {
    await withClient(host, {}, async (client) => {
      const tally = await client.conversation('tally', { start: 10 });
      const socket = client.socket;
      await tally.send({ n: 5 });
      assert.deepEqual(await tally.recv(), { total: 15 });
      assert.equal(tally.over, false);
      await tally.send({ n: 2 });
      assert.deepEqual(await tally.recv(), { total: 17 });
      await tally.send({ n: 'seven' });
      assert.ok('warning' in (await tally.recv()));
      await tally.send({ done: true });
      const response = await tally.recv();
      assert.deepEqual(response, { count: 2, success: true, total: 17 });
      assert.ok(tally.over);
      assert.deepEqual(tally.response, response);
      await assert.rejects(tally.send({ n: 1 }), ConversationOver);
      await assert.rejects(tally.recv(), ConversationOver);
      assert.equal((await client.call('add', { x: 1, y: 2 })).solution, 3);
      assert.equal(client.socket, socket);
    });
  });

  test('other requests are refused while a conversation runs', async () => {
    await withClient(host, {}, async (client) => {
      const tally = await client.conversation('tally');
      await assert.rejects(client.execute('add', { x: 1, y: 1 }), ClientBusy);
      await tally.send({ done: true });
      assert.equal((await tally.wait()).success, true);
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
    });
  });

  test('closeSend: the handler sees the end; the client disconnects after the response', async () => {
    await withClient(host, {}, async (client) => {
      const tally = await client.conversation('tally', { start: 1 });
      await tally.send({ n: 1 });
      await tally.closeSend();
      await assert.rejects(tally.send({ n: 1 }), SendClosed);
      assert.deepEqual(await tally.recv(), { total: 2 });
      assert.deepEqual(await tally.wait(), { count: 1, success: true, total: 2 });
      assert.equal(client.connected, false);
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
    });
  });

  test('for await yields the messages until the response', async () => {
    await withClient(host, {}, async (client) => {
      const conversation = await client.conversation('misbehave', { do: 'plant', secret: 0 });
      const seen = [];
      for await (const message of conversation) {
        seen.push(message);
        await conversation.send({ ok: true });
      }
      assert.deepEqual(seen, [{ planted: true }]);
      assert.deepEqual(conversation.response, { success: true });
    });
  });

  test('closing a conversation early disconnects', async () => {
    await withClient(host, {}, async (client) => {
      const tally = await client.conversation('tally');
      await tally.send({ n: 3 });
      assert.deepEqual(await tally.recv(), { total: 3 });
      tally.close();
      assert.ok(tally.over);
      assert.equal(client.connected, false);
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
    });
  });

  test('execute refuses a conversational handler', async () => {
    await withClient(host, {}, async (client) => {
      const error = await client.execute('misbehave', { do: 'plant', secret: 0 }).catch((e) => e);
      assert.ok(error instanceof UnexpectedMessage, String(error));
      assert.deepEqual(error.received, { planted: true });
      assert.equal(client.connected, false);
      assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
    });
  });
});

describe('timeouts and closed connections', () => {
  test('the client timeout bounds the wait and disconnects', async () => {
    const client = clientOf(host, { timeout: 300 });
    const started = Date.now();
    const error = await client.execute('misbehave', { do: 'sleep', ms: 900 }).catch((e) => e);
    const elapsed = Date.now() - started;
    assert.ok(error instanceof TimeoutError, String(error));
    assert.equal(error.operation, 'recv');
    assert.equal(error.after, 300);
    assert.ok(elapsed >= 250 && elapsed < 850, `${elapsed} ms`);
    assert.equal(client.connected, false);
    await sleep(700);
    assert.deepEqual(await client.execute('add', { x: 1, y: 1 }), { solution: 2, success: true });
    client.close();
  });

  test('a recv timeout in a conversation loses nothing', async () => {
    await withClient(host, { timeout: 200 }, async (client) => {
      const conversation = await client.conversation('misbehave', { do: 'sleep', ms: 500 });
      await assert.rejects(conversation.recv(), TimeoutError);
      assert.equal(conversation.over, false);
      assert.ok(client.connected);
      client.timeout = 5000;
      assert.deepEqual(await conversation.recv(), { slept_ms: 500, success: true });
    });
  });

  test('a refused connection names the address', async () => {
    const port = await new Promise((resolve) => {
      const probe = net.createServer();
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address();
        probe.close(() => resolve(port));
      });
    });
    const client = new Client({ host: '127.0.0.1', port, timeout: 2000 });
    const error = await client.execute('add', { x: 1, y: 2 }).catch((e) => e);
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.address, `127.0.0.1:${port}`);
    assert.equal(client.connected, false);
  });

  test('a host killed mid-request is a closed connection', async () => {
    const victim = await startHost();
    try {
      await withClient(victim, {}, async (client) => {
        assert.equal((await client.call('add', { x: 1, y: 1 })).solution, 2);
        setTimeout(() => victim.kill(), 300);
        const error = await client.execute('misbehave', { do: 'sleep', ms: 3000 }).catch((e) => e);
        assert.ok(error instanceof ConnectionClosed || error instanceof ConnectionFailed, String(error));
        assert.equal(client.connected, false);
      });
    } finally {
      await victim.stop();
    }
  });
});

describe('volume', () => {
  test('1,000 requests on one connection', async () => {
    await withClient(host, {}, async (client) => {
      await client.connect();
      const socket = client.socket;
      for (let i = 0; i < 1000; i++) {
        assert.deepEqual(await client.execute('add', { x: i, y: i }), { solution: 2 * i, success: true });
      }
      assert.equal(client.socket, socket);
    });
  });

  test('32 concurrent clients', async () => {
    const results = await Promise.all(
      Array.from({ length: 32 }, (_, k) =>
        withClient(host, {}, async (client) => {
          for (let i = 0; i < 25; i++) {
            assert.equal((await client.call('add', { x: k, y: i })).solution, k + i);
          }
          return k;
        }),
      ),
    );
    assert.deepEqual(results, Array.from({ length: 32 }, (_, k) => k));
  });

  test('one client shared by concurrent calls runs them in turn', async () => {
    await withClient(host, {}, async (client) => {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => client.call('add', { x: i, y: i })));
      assert.deepEqual(
        results.map((r) => r.solution),
        Array.from({ length: 50 }, (_, i) => 2 * i),
      );
    });
  });
});
