// A rough requests/s of `add` against a running host: sequential requests on one
// connection, then 32 concurrent clients. Reports, asserts nothing.
//
//     node bench.js --port 7272 --seconds 3

import { parseArgs } from 'node:util';

import { Client } from './index.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7272' },
    seconds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '32' },
  },
});
const host = values.host;
const port = Number(values.port);
const seconds = Number(values.seconds);
const clients = Number(values.clients);

async function run(deadline) {
  const client = new Client({ host, port });
  let count = 0;
  try {
    await client.execute('add', { x: 1, y: 1 });
    while (performance.now() < deadline) {
      const response = await client.execute('add', { x: count, y: 1 });
      if (response.solution !== count + 1) throw new Error(`wrong answer: ${JSON.stringify(response)}`);
      count++;
    }
  } finally {
    client.close();
  }
  return count;
}

let started = performance.now();
const sequential = await run(started + seconds * 1000);
console.log(`sequential, one connection: ${Math.round(sequential / ((performance.now() - started) / 1000)).toLocaleString('en')} req/s`);

started = performance.now();
const counts = await Promise.all(Array.from({ length: clients }, () => run(started + seconds * 1000)));
const total = counts.reduce((a, b) => a + b, 0);
console.log(`${clients} concurrent clients: ${Math.round(total / ((performance.now() - started) / 1000)).toLocaleString('en')} req/s`);
