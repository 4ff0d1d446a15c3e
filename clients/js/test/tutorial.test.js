// The 2014 tutorial's request, from JavaScript, on the default localhost:7272.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import { Client, DEFAULT_HOST, DEFAULT_PORT } from '../index.js';
import { startHost } from './host.js';

const portFree = (port) =>
  new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });

test('new Client() talks to localhost:7272 by default', async (t) => {
  assert.equal(DEFAULT_HOST, 'localhost');
  assert.equal(DEFAULT_PORT, 7272);
  if (!(await portFree(7272))) {
    t.skip('port 7272 is taken');
    return;
  }
  const host = await startHost([], { port: 7272 });
  const client = new Client();
  try {
    assert.equal(client.address, 'localhost:7272');
    assert.deepEqual(await client.execute('add', { x: 1, y: 2 }), { solution: 3, success: true });
  } finally {
    client.close();
    await host.stop();
  }
});
