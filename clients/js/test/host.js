// Real tcpy hosts for the tests: `startHost()` runs tcpy-host on a free loopback port
// and resolves once it listens; `stop()` ends it. Every wait is bounded.
//
// The binary and handlers come from TCPY_HOST_BIN and TCPY_HANDLERS (set by
// `cargo xtask test`), defaulting to the workspace's target/debug/tcpy-host and
// target/test-handlers.

import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const workspace = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const HOST_BIN = process.env.TCPY_HOST_BIN ?? path.join(workspace, 'target/debug/tcpy-host');
export const HANDLERS = process.env.TCPY_HANDLERS ?? path.join(workspace, 'target/test-handlers');
const STARTUP_TIMEOUT = 60_000;
const STOP_TIMEOUT = 15_000;
const cache = mkdtempSync(path.join(tmpdir(), 'tcpy-js-cache-'));
process.once('exit', () => rmSync(cache, { recursive: true, force: true }));

/** A running host: `host` and `port` to connect to. */
export class Host {
  constructor(child, host, port, log) {
    this.child = child;
    this.host = host;
    this.port = port;
    this.log = log;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
  }

  /** SIGTERM: the host drains (`--drain-delay 0s`) and shuts down. */
  terminate() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** Resolves to true once the host has exited, false if it has not within `ms`. */
  async waitExit(ms = STOP_TIMEOUT) {
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const done = await Promise.race([this.exited.then(() => true), timeout]);
    clearTimeout(timer);
    return done;
  }

  async stop() {
    this.terminate();
    if (!(await this.waitExit())) {
      this.kill();
      await this.waitExit();
    }
  }
}

/** Starts a host with extra flags, on `port` (0: a free one), serving `handlers` (default: the test handlers). */
export function startHost(args = [], { port = 0, handlers = HANDLERS } = {}) {
  if (!existsSync(HOST_BIN)) {
    throw new Error(`no tcpy-host at ${HOST_BIN}: build it (cargo build -p tcpy-host) or set TCPY_HOST_BIN`);
  }
  if (!existsSync(path.join(HANDLERS, 'add.wasm'))) {
    throw new Error(`no handlers in ${HANDLERS}: run cargo xtask build-handlers or set TCPY_HANDLERS`);
  }
  const child = spawn(
    HOST_BIN,
    [
      '--handlers', handlers,
      '--host', '127.0.0.1',
      '--port', String(port),
      '--no-watch',
      '--cache-dir', cache,
      // Each host its own key-value stores: two may not share one redb file.
      '--data-dir', mkdtempSync(path.join(cache, 'data-')),
      '--drain-delay', '0s',
      ...args,
    ],
    { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let log = '';
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tcpy-host did not listen within ${STARTUP_TIMEOUT} ms:\n${log}`));
    }, STARTUP_TIMEOUT);
    const onData = (data) => {
      log += data;
      if (log.length > 1 << 20) log = log.slice(-(1 << 19));
      const match = !ready && /tcpy-host listening address=(\S+):(\d+)/.exec(log);
      if (match) {
        ready = true;
        clearTimeout(timer);
        resolve(new Host(child, match[1], Number(match[2]), () => log));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code) => {
      if (!ready) {
        clearTimeout(timer);
        reject(new Error(`tcpy-host exited with ${code}:\n${log}`));
      }
    });
  });
}

/** A promise that resolves after `ms`. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A temp dir, removed when the process exits. */
export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Test certificates, made with the `openssl` CLI in a temp dir (EC P-256, valid two
 * days): `ca`; `server`, signed by it, for `localhost` and `127.0.0.1`; `client`,
 * signed by it, CN `ops`; and `otherCa`, self-signed, which signed nothing the hosts
 * use. Each has `.cert` and `.key` (paths); `read(path)` gives the PEM.
 */
export function makeCerts() {
  const dir = tempDir('tcpy-js-certs-');
  const make = (name, cn, { ca = false, signer = null, san = null, usage = null } = {}) => {
    const cert = path.join(dir, `${name}.pem`);
    const key = path.join(dir, `${name}.key`);
    const args = [
      'req', '-x509', '-new',
      '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
    ];
    if (ca) args.push('-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    else args.push('-addext', 'basicConstraints=critical,CA:FALSE');
    if (signer) args.push('-CA', signer.cert, '-CAkey', signer.key);
    if (san) args.push('-addext', `subjectAltName=${san}`);
    if (usage) args.push('-addext', `extendedKeyUsage=${usage}`);
    try {
      execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
    } catch (error) {
      if (error.code === 'ENOENT') {
        throw new Error('the TLS tests need the openssl CLI (Debian: apt-get install openssl)');
      }
      throw new Error(`openssl ${args.join(' ')} failed: ${error.stderr ?? error.message}`);
    }
    return { cert, key };
  };
  const ca = make('ca', 'tcpy-test-ca', { ca: true });
  return {
    dir,
    ca,
    server: make('server', 'localhost', { signer: ca, san: 'DNS:localhost,IP:127.0.0.1', usage: 'serverAuth' }),
    client: make('ops', 'ops', { signer: ca, usage: 'clientAuth' }),
    otherCa: make('other-ca', 'tcpy-other-ca', { ca: true }),
    read: (file) => readFileSync(file),
  };
}

/**
 * A handlers dir holding `add.wasm` and `tally.wasm` from the test handlers, with
 * `files` (name to content) beside them, e.g. `{ 'add.toml': '[access]\nallow = ["billing"]\n' }`.
 */
export function handlersDir(files = {}) {
  const dir = path.join(tempDir('tcpy-js-handlers-'), 'handlers');
  mkdirSync(dir);
  for (const name of ['add.wasm', 'tally.wasm']) copyFileSync(path.join(HANDLERS, name), path.join(dir, name));
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  return dir;
}
