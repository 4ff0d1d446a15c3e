// tcpy: a JavaScript (Node >= 20) client for tcpy hosts. No dependencies.
//
// The protocol is the host's frame mode with JSON bodies (docs/protocol.md): each
// message is a 4-byte big-endian length, then that many bytes of a JSON object. With
// `tls`, it runs inside TLS (node:tls); with `token`, every new connection starts with
// the `auth` message.

import net from 'node:net';
import tls from 'node:tls';

/** The host's name unless told otherwise. */
export const DEFAULT_HOST = 'localhost';
/** The host's port unless told otherwise. */
export const DEFAULT_PORT = 7272;
/** Milliseconds each step (connect, send one message, receive one message) may take. */
export const DEFAULT_TIMEOUT = 30_000;
/** The largest message sent or accepted, as the host's default `--max-message`. */
export const DEFAULT_MAX_MESSAGE = 1 << 20;

const HEADER = 4;
// After these the host closes the connection, always (idle_timeout, read_timeout,
// shutting_down) or sometimes (busy at the connection limit, too_large over a
// request): the client does not keep it, since its FIN may still be on the way.
// `unauthorized` (a host that asks for tokens, answering a first message that is not a
// good `auth`) always closes it.
const CLOSING = new Set(['idle_timeout', 'read_timeout', 'shutting_down', 'busy', 'too_large', 'unauthorized']);
// After these on a kept connection the request was not run: it may be sent again.
const CLOSED_UNRUN = new Set(['idle_timeout', 'shutting_down']);
// The host's codes that say nothing ran.
const NOT_RUN = new Set(['busy', 'idle_timeout', 'shutting_down']);

// -- errors ------------------------------------------------------------------------

/** Base class of every error of the tcpy client. `code` names the kind. */
export class TcpyError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
    this.code = 'TCPY_ERROR';
  }
}

/** The TCP connection could not be made; `address` is `host:port`, `cause` the OS error. */
export class ConnectError extends TcpyError {
  constructor(address, cause) {
    super(`cannot connect to ${address}: ${cause?.message ?? cause}`, { cause });
    this.code = 'TCPY_CONNECT';
    this.address = address;
  }
}

/** An established connection failed (reset, broken pipe…); the client has disconnected. */
export class ConnectionFailed extends TcpyError {
  constructor(message, cause) {
    super(message, { cause });
    this.code = 'TCPY_CONNECTION_FAILED';
  }
}

/** The host closed the connection; the client has disconnected. */
export class ConnectionClosed extends TcpyError {
  constructor(message = 'the server closed the connection') {
    super(message);
    this.code = 'TCPY_CLOSED';
  }
}

/**
 * TLS failed: the handshake (the host's certificate is not signed by a trusted CA or
 * does not name the host, the host refused the client's certificate, the host does not
 * speak TLS), or the session later (an alert: with TLS 1.3 a host that requires a
 * client certificate says so only after the handshake, on the first read), or a
 * plaintext client got a TLS answer. The client has disconnected; `cause` is Node's
 * error (its `code`, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`,
 * `ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED`).
 */
export class TlsError extends TcpyError {
  constructor(message, cause) {
    super(message, { cause });
    this.code = 'TCPY_TLS';
  }
}

/** A message was to be sent or received without a connection: `connect()` first. */
export class NotConnected extends TcpyError {
  constructor() {
    super('not connected');
    this.code = 'TCPY_NOT_CONNECTED';
  }
}

/**
 * A step took longer than the client's `timeout`: `operation` is `'connect'`, `'send'`
 * or `'recv'`, `after` the timeout in ms. (A handler past the host's deadline is a
 * `ServerError` with code `timeout`.)
 */
export class TimeoutError extends TcpyError {
  constructor(operation, after, address = '') {
    const what = {
      connect: address ? `connecting to ${address}` : 'connecting',
      send: 'sending a message',
      recv: 'waiting for a message from the server',
    }[operation] ?? operation;
    super(`timed out after ${after} ms ${what}`);
    this.code = 'TCPY_TIMEOUT';
    this.operation = operation;
    this.after = after;
  }
}

/** The server sent something that is not a tcpy message (not a JSON object). */
export class ProtocolError extends TcpyError {
  constructor(message, cause) {
    super(message, { cause });
    this.code = 'TCPY_PROTOCOL';
  }
}

/** A message over the client's `maxMessage`: to send (nothing was sent) or announced by the server (disconnected). */
export class MessageTooLarge extends TcpyError {
  constructor(size, limit, direction) {
    super(`${direction} message of ${size} bytes exceeds the limit of ${limit} bytes`);
    this.code = 'TCPY_TOO_LARGE';
    this.size = size;
    this.limit = limit;
  }
}

/** A message could not be encoded as JSON; nothing was sent. */
export class EncodeError extends TcpyError {
  constructor(message, cause) {
    super(message, { cause });
    this.code = 'TCPY_ENCODE';
  }
}

/** The command or params of a request are not valid; nothing was sent. */
export class InvalidParams extends TcpyError {
  constructor(message) {
    super(message);
    this.code = 'TCPY_INVALID_PARAMS';
  }
}

/** A one-shot request got a message before its response: the handler wants a conversation. Disconnected. */
export class UnexpectedMessage extends TcpyError {
  constructor(received) {
    super(
      'expected a response, but the handler sent a message first (it needs a conversation): ' +
        JSON.stringify(received),
    );
    this.code = 'TCPY_UNEXPECTED_MESSAGE';
    this.received = received;
  }
}

/** The conversation has ended (its response arrived, or it failed). */
export class ConversationOver extends TcpyError {
  constructor() {
    super('the conversation is over');
    this.code = 'TCPY_CONVERSATION_OVER';
  }
}

/** A message was to be sent in a conversation after `closeSend()`. */
export class SendClosed extends TcpyError {
  constructor() {
    super('the client has closed its sending side of the conversation');
    this.code = 'TCPY_SEND_CLOSED';
  }
}

/** Another request or conversation holds the client (a conversation in progress). */
export class ClientBusy extends TcpyError {
  constructor() {
    super('a conversation is in progress on this client: finish or close it first');
    this.code = 'TCPY_CLIENT_BUSY';
  }
}

/**
 * An error response, `{"error": true, ...}`, thrown by `call` (never by `execute`).
 * `code` is the response's `"code"` (`'busy'`, `'unknown_command'`, … or a handler's
 * own), or `null`; `message` its `"message"`; `response` the response as it came;
 * `notRun` whether the host says the request did not run (`busy`, `idle_timeout`,
 * `shutting_down`).
 */
export class ServerError extends TcpyError {
  constructor(response) {
    const code = typeof response.code === 'string' ? response.code : null;
    const text = typeof response.message === 'string' ? response.message : JSON.stringify(response);
    super(`error response${code ? ` (${code})` : ''}: ${text}`);
    this.code = code;
    this.serverMessage = text;
    this.response = response;
    this.notRun = code !== null && NOT_RUN.has(code);
  }
}

// -- the wire ------------------------------------------------------------------------

/** Whether `message` ends its request: `"success": true` or `"error": true`. */
export function isResponse(message) {
  return message?.success === true || message?.error === true;
}

function isError(message) {
  return message?.error === true;
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function frame(message, maxMessage) {
  if (!isObject(message)) {
    throw new EncodeError(`a message must be an object, not ${describe(message)}`);
  }
  let text;
  try {
    text = JSON.stringify(message);
  } catch (error) {
    throw new EncodeError(`cannot encode the message: ${error.message}`, error);
  }
  const length = Buffer.byteLength(text, 'utf8');
  if (length > maxMessage) {
    throw new MessageTooLarge(length, maxMessage, 'outgoing');
  }
  const buffer = Buffer.allocUnsafe(HEADER + length);
  buffer.writeUInt32BE(length, 0);
  buffer.write(text, HEADER, 'utf8');
  return buffer;
}

function decode(body) {
  const first = body.toString('latin1', 0, Math.min(body.length, 64)).trimStart()[0];
  if (first !== '{') {
    if (body.length > 0 && (body[0] & 0xf0) === 0x80) {
      throw new ProtocolError('the server sent msgpack, which this client does not read');
    }
    throw new ProtocolError('the server sent a message that is not a JSON object');
  }
  let value;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ProtocolError(`the server sent invalid JSON: ${error.message}`, error);
  }
  if (!isObject(value)) {
    throw new ProtocolError('the server sent a message that is not an object');
  }
  return value;
}

function request(cmd, params) {
  if (typeof cmd !== 'string') {
    throw new InvalidParams(`cmd must be a string, not ${describe(cmd)}`);
  }
  if (params === undefined || params === null) {
    return { cmd };
  }
  if (!isObject(params)) {
    throw new InvalidParams(`params must be an object, not ${describe(params)}`);
  }
  if (Object.hasOwn(params, 'cmd')) {
    throw new InvalidParams('params cannot hold "cmd": it names the command');
  }
  return { cmd, ...params };
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

// Whether `head` starts like a TLS record (an alert or a handshake, version 3.x), which a
// host serving TLS sends a plaintext client.
function looksLikeTls(head) {
  return head.length >= 3 && (head[0] === 0x15 || head[0] === 0x16) && head[1] === 0x03 && head[2] <= 0x04;
}

// Node's TLS errors: OpenSSL's (`ERR_SSL_…`), its own (`ERR_TLS_…`), and certificate
// verification's (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `CERT_HAS_EXPIRED`, …).
function isTlsError(error) {
  const code = typeof error?.code === 'string' ? error.code : '';
  return (
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    /CERT|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO/.test(code) ||
    error?.library === 'SSL routines'
  );
}

function sessionError(address, error) {
  const hint = /CERTIFICATE_REQUIRED/.test(error.code ?? '')
    ? ' (the host requires a client certificate: tls.cert and tls.key)'
    : '';
  return new TlsError(`the TLS session with ${address} failed: ${tlsReason(error)}${hint}`, error);
}

function handshakeReason(error) {
  const code = typeof error.code === 'string' ? error.code : '';
  if (!code.startsWith('ERR_') && /CERT|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO/.test(code)) {
    // Certificate verification: UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, …
    return `the host's certificate did not verify: ${error.message} (${code})`;
  }
  return tlsReason(error);
}

// OpenSSL's reason ("wrong version number") rather than its whole error string.
function tlsReason(error) {
  return typeof error.reason === 'string' && error.reason ? error.reason : String(error.message).split('\n')[0];
}

function checkTls(option) {
  if (option === undefined || option === null || option === false) return null;
  if (option === true) return {};
  if (!isObject(option)) {
    throw new TypeError(`tls must be an object ({ ca, cert, key, servername }), true or null, not ${describe(option)}`);
  }
  if ((option.key === undefined) !== (option.cert === undefined) && option.pfx === undefined) {
    throw new TypeError('tls.cert and tls.key go together');
  }
  return { ...option };
}

function checkToken(token) {
  if (token === undefined || token === null) return null;
  if (typeof token !== 'string' || token.length === 0) {
    throw new TypeError('token must be a non-empty string, or null');
  }
  return token;
}

function checkTimeout(timeout) {
  if (timeout === null || timeout === Infinity) return null;
  if (typeof timeout !== 'number' || !(timeout > 0)) {
    throw new RangeError(`timeout must be a positive number of ms, or null, not ${timeout}`);
  }
  return timeout;
}

/** One socket and the frames read off it. */
class Connection {
  #socket;
  #maxMessage;
  #chunks = [];
  #buffered = 0;
  #frames = [];
  #waiter = null;
  #failure = null; // an Error that ends every later read
  #ended = false;

  constructor(socket, maxMessage, address) {
    this.#socket = socket;
    this.#maxMessage = maxMessage;
    socket.on('data', (data) => this.#onData(data));
    socket.on('end', () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on('error', (error) => {
      this.#failure ??= isTlsError(error)
        ? sessionError(address, error)
        : new ConnectionFailed(`the connection failed: ${error.message}`, error);
      this.#wake();
    });
    socket.on('close', () => {
      this.#ended = true;
      this.#wake();
    });
  }

  /** Whether the host has closed (or broken) the connection: nothing more can be sent. */
  get finished() {
    return this.#ended || this.#failure !== null;
  }

  /** The last whole message that arrived unread, decoded, or null. */
  lastUnread() {
    const body = this.#frames.at(-1);
    if (body === undefined) return null;
    try {
      return decode(body);
    } catch {
      return null;
    }
  }

  get socket() {
    return this.#socket;
  }

  #onData(data) {
    this.#chunks.push(data);
    this.#buffered += data.length;
    while (this.#failure === null && this.#buffered >= HEADER) {
      const head = this.#peek(HEADER);
      const length = head.readUInt32BE(0);
      if (length > this.#maxMessage) {
        this.#failure = looksLikeTls(head)
          ? new TlsError('the server answered with TLS: it serves TLS, so connect with the `tls` option')
          : new MessageTooLarge(length, this.#maxMessage, 'incoming');
        this.#socket.destroy();
        break;
      }
      if (this.#buffered < HEADER + length) break;
      const whole = this.#take(HEADER + length);
      this.#frames.push(whole.subarray(HEADER));
    }
    this.#wake();
  }

  #peek(n) {
    if (this.#chunks[0].length < n) {
      this.#chunks = [Buffer.concat(this.#chunks)];
    }
    return this.#chunks[0];
  }

  #take(n) {
    const all = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return taken;
  }

  #wake() {
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      waiter();
    }
  }

  /** The next frame's body; a timeout loses nothing. */
  next(timeout) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const attempt = () => {
        if (this.#frames.length > 0) {
          if (timer !== null) clearTimeout(timer);
          resolve(this.#frames.shift());
          return;
        }
        if (this.#failure !== null || this.#ended) {
          if (timer !== null) clearTimeout(timer);
          reject(
            this.#failure ??
              new ConnectionClosed(
                this.#buffered > 0
                  ? 'the server closed the connection in the middle of a message'
                  : 'the server closed the connection',
              ),
          );
          return;
        }
        this.#waiter = attempt;
      };
      if (timeout !== null) {
        timer = setTimeout(() => {
          if (this.#waiter === attempt) this.#waiter = null;
          reject(new TimeoutError('recv', timeout));
        }, timeout);
      }
      attempt();
    });
  }

  /** Writes `data`, resolved once it is handed to the OS. */
  write(data, timeout) {
    return new Promise((resolve, reject) => {
      if (this.#failure !== null) {
        reject(this.#failure);
        return;
      }
      let timer = null;
      let done = false;
      if (timeout !== null) {
        timer = setTimeout(() => {
          done = true;
          reject(new TimeoutError('send', timeout));
        }, timeout);
      }
      this.#socket.write(data, (error) => {
        if (done) return;
        done = true;
        if (timer !== null) clearTimeout(timer);
        if (error) reject(new ConnectionFailed(`sending failed: ${error.message}`, error));
        else resolve();
      });
    });
  }

  /** Shuts down the sending half. */
  end(timeout) {
    return new Promise((resolve, reject) => {
      let timer = null;
      if (timeout !== null) {
        timer = setTimeout(() => reject(new TimeoutError('send', timeout)), timeout);
      }
      this.#socket.end(() => {
        if (timer !== null) clearTimeout(timer);
        resolve();
      });
    });
  }

  close() {
    this.#socket.destroy();
    this.#ended = true;
    this.#wake();
  }
}

// -- the client ------------------------------------------------------------------------

/**
 * A client of a tcpy host. It connects on first use (or on `connect()`) and keeps the
 * connection for the requests that follow; requests on one client run one after the
 * other (concurrent calls wait their turn). When a call fails in a way that leaves the
 * connection out of step, the client disconnects and the next request connects again.
 * It resends a request by itself only when the host says it did not run it
 * (`idle_timeout` or `shutting_down` on a kept connection), once, on a new connection.
 *
 * ```js
 * const client = new Client({ host: 'localhost', port: 7272 });
 * const response = await client.execute('add', { x: 1, y: 2 }); // { solution: 3, success: true }
 * client.close();
 * ```
 */
export class Client {
  #conn = null;
  #conversation = null;
  #turn = Promise.resolve();
  #tls;
  #token;

  /**
   * @param {object} [options]
   * @param {string} [options.host] default `localhost`
   * @param {number} [options.port] default 7272
   * @param {number|null} [options.timeout] ms each step may take (connect, send one
   *   message, receive one message); `null` waits forever. Default 30 000.
   * @param {number} [options.maxMessage] largest message sent or accepted, bytes (default 1 MiB)
   * @param {object|boolean} [options.tls] speak TLS (to a host run with `--tls-cert`):
   *   `{ ca, cert, key, servername }`, PEM strings or Buffers (`fs.readFileSync('ca.pem')`);
   *   `ca` the CAs the host's certificate must be signed by (default: Node's), `cert`
   *   and `key` the client's certificate for a host that asks for one, `servername` the
   *   name the host's certificate must carry (default `host`). Other `tls.connect`
   *   options pass through. `true`: Node's CAs, no client certificate.
   * @param {string} [options.token] for a host run with `--auth-tokens`: sent as
   *   `{"cmd": "auth", "token": …}` on every new connection; a refusal rejects
   *   `connect()` (and so `execute`, `call`) with a `ServerError`, code `unauthorized`.
   *   Not read from the environment: pass `process.env.TCPY_TOKEN` for the CLI's variable.
   */
  constructor({
    host = DEFAULT_HOST,
    port = DEFAULT_PORT,
    timeout = DEFAULT_TIMEOUT,
    maxMessage = DEFAULT_MAX_MESSAGE,
    tls: tlsOptions = null,
    token = null,
  } = {}) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(`port must be an integer from 0 to 65535, not ${port}`);
    }
    if (!Number.isInteger(maxMessage) || maxMessage <= 0) {
      throw new RangeError(`maxMessage must be a positive number of bytes, not ${maxMessage}`);
    }
    this.host = host;
    this.port = port;
    this.timeout = checkTimeout(timeout);
    this.maxMessage = maxMessage;
    this.#tls = checkTls(tlsOptions);
    this.#token = checkToken(token);
    /** The identity the host named for the token on the last connection, or null. */
    this.identity = null;
  }

  /** Whether the client speaks TLS. */
  get tls() {
    return this.#tls !== null;
  }

  /** `host:port` (`[::1]:7272` for an IPv6 literal). */
  get address() {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Whether the client holds a connection (the host may have closed it since). */
  get connected() {
    return this.#conn !== null;
  }

  /**
   * Connects, unless already connected; with `tls`, makes the TLS handshake; with a
   * `token`, authenticates. Rejects with `ConnectError`, `TlsError`, `TimeoutError`, or
   * a `ServerError` with code `unauthorized` when the host refuses the token.
   */
  async connect() {
    if (this.#conn === null) {
      this.#conn = await this.#open();
      if (this.#token !== null) await this.#authenticate(this.#token);
    }
  }

  /** Closes the connection, if any. Closing twice is fine. */
  close() {
    this.#conversation?._end();
    this.#drop();
  }

  /** Same as `close()`, the 2014 name. */
  disconnect() {
    this.close();
  }

  /** Sends one message as it is, with no `cmd` added (the raw protocol). */
  async send(message) {
    if (this.#conn === null) throw new NotConnected();
    await this._write(frame(message, this.maxMessage));
  }

  /**
   * The next message from the host, whatever it is. A timeout or an undecodable
   * message leaves the connection open; any other failure disconnects.
   */
  async recv() {
    if (this.#conn === null) throw new NotConnected();
    return this._read();
  }

  /**
   * Runs `cmd` with `params` and resolves to its response as it came, `{success: true, ...}`
   * or `{error: true, ...}` alike. For one-shot requests: a handler that sends messages
   * first needs `conversation()`.
   */
  async execute(cmd, params = {}) {
    const data = frame(request(cmd, params), this.maxMessage);
    return this.#inTurn(async () => {
      this.#checkFree();
      const lastWord = this.#forgetIfClosed();
      const reused = this.#conn !== null;
      try {
        await this.connect();
      } catch (error) {
        // The host said it is shutting down, then closed: that answer stands.
        if (lastWord?.code === 'shutting_down') return lastWord;
        throw error;
      }
      let response;
      try {
        await this._write(data);
        response = await this._read();
        const code = reused && isError(response) && CLOSED_UNRUN.has(response.code) ? response.code : null;
        if (code !== null) {
          // Not run: once more on a new connection, which a balancer gives to another
          // host. If there is none, the `shutting_down` answer stands.
          this.#drop();
          try {
            await this.connect();
          } catch (error) {
            if (code === 'shutting_down' && error instanceof TcpyError) return response;
            throw error;
          }
          await this._write(data);
          response = await this._read();
        }
        if (!isResponse(response)) throw new UnexpectedMessage(response);
      } catch (error) {
        this.#drop();
        throw error;
      }
      if (isError(response) && CLOSING.has(response.code)) this.#drop();
      return response;
    });
  }

  /** Like `execute`, but an error response rejects with a `ServerError`. */
  async call(cmd, params = {}) {
    const response = await this.execute(cmd, params);
    if (isError(response)) throw new ServerError(response);
    return response;
  }

  /** Starts a conversation: sends the request and resolves to its `Conversation`. */
  async conversation(cmd, params = {}) {
    const data = frame(request(cmd, params), this.maxMessage);
    return this.#inTurn(async () => {
      this.#checkFree();
      this.#forgetIfClosed();
      await this.connect();
      await this._write(data);
      this.#conversation = new Conversation(this);
      return this.#conversation;
    });
  }

  // -- internals (used by Conversation) --

  async _write(data) {
    const conn = this.#conn;
    if (conn === null) throw new NotConnected();
    try {
      await conn.write(data, this.timeout);
    } catch (error) {
      this.#drop();
      throw error;
    }
  }

  async _read() {
    const conn = this.#conn;
    if (conn === null) throw new NotConnected();
    let body;
    try {
      body = await conn.next(this.timeout);
    } catch (error) {
      if (!(error instanceof TimeoutError)) this.#drop();
      throw error;
    }
    return decode(body);
  }

  async _closeSend() {
    const conn = this.#conn;
    if (conn === null) throw new NotConnected();
    try {
      await conn.end(this.timeout);
    } catch (error) {
      this.#drop();
      throw error;
    }
  }

  _dropConnection() {
    this.#drop();
  }

  _conversationEnded(conversation) {
    if (this.#conversation === conversation) this.#conversation = null;
  }

  /** The raw socket, for tests and socket options; writing to it puts the client out of step. */
  get socket() {
    return this.#conn?.socket ?? null;
  }

  async #authenticate(token) {
    let answer;
    try {
      await this._write(frame({ cmd: 'auth', token }, this.maxMessage));
      answer = await this._read();
    } catch (error) {
      this.#drop();
      throw error;
    }
    if (answer.success === true) {
      this.identity = typeof answer.identity === 'string' ? answer.identity : null;
      return;
    }
    this.#drop();
    if (isError(answer)) throw new ServerError(answer);
    throw new ProtocolError(`the server answered the auth message with something else: ${JSON.stringify(answer)}`);
  }

  #drop() {
    const conn = this.#conn;
    this.#conn = null;
    conn?.close();
  }

  #checkFree() {
    if (this.#conversation !== null && !this.#conversation.over) throw new ClientBusy();
  }

  #forgetIfClosed() {
    // Nothing is sent yet, so reconnecting is safe. What the host may have said before
    // closing (an unasked `idle_timeout` or `shutting_down`) answers no request of
    // ours. On a connection still open, such a message is read as the answer, and the
    // request sent again (see execute).
    if (this.#conn === null || !this.#conn.finished) return null;
    const last = this.#conn.lastUnread();
    this.#drop();
    return isError(last) && CLOSED_UNRUN.has(last.code) ? last : null;
  }

  #inTurn(task) {
    const run = this.#turn.then(task);
    this.#turn = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  #open() {
    const address = this.address;
    return new Promise((resolve, reject) => {
      const secure = this.#tls !== null;
      const socket = secure
        ? tls.connect({ minVersion: 'TLSv1.2', ...this.#tls, host: this.host, port: this.port })
        : net.createConnection({ host: this.host, port: this.port });
      let connected = false; // the TCP connection: a later error is the handshake's
      let timer = null;
      const fail = (error) => {
        if (timer !== null) clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      if (this.timeout !== null) {
        timer = setTimeout(() => fail(new TimeoutError('connect', this.timeout, address)), this.timeout);
      }
      socket.once('error', (error) => {
        if (!connected && !isTlsError(error)) {
          fail(new ConnectError(address, error));
        } else {
          fail(new TlsError(`TLS handshake with ${address} failed: ${handshakeReason(error)}`, error));
        }
      });
      const ready = () => {
        if (timer !== null) clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new Connection(socket, this.maxMessage, address));
      };
      socket.once('connect', () => {
        connected = true;
        socket.setNoDelay(true);
        if (!secure) ready();
      });
      if (secure) socket.once('secureConnect', ready);
    });
  }
}

/**
 * A request in progress whose handler may send messages and wait for replies. Receive
 * with `recv()` until `over` (the response is then in `response`); reply with `send()`;
 * `closeSend()` says no more will come. `for await` yields the handler's messages until
 * the response. `close()` before the response disconnects the client.
 */
export class Conversation {
  #client;
  #sendClosed = false;

  constructor(client) {
    this.#client = client;
    /** Whether the conversation has ended: its response arrived, or it failed. */
    this.over = false;
    /** The response, once it has arrived. */
    this.response = null;
  }

  /** Sends one message to the handler. */
  async send(message) {
    if (this.over) throw new ConversationOver();
    if (this.#sendClosed) throw new SendClosed();
    const data = frame(message, this.#client.maxMessage);
    try {
      await this.#client._write(data);
    } catch (error) {
      this._end();
      throw error;
    }
  }

  /** The handler's next message or its response. A timeout leaves the conversation going. */
  async recv() {
    if (this.over) throw new ConversationOver();
    let message;
    try {
      message = await this.#client._read();
    } catch (error) {
      if (!(error instanceof TimeoutError)) {
        this._end();
        this.#client._dropConnection();
      }
      throw error;
    }
    if (isResponse(message)) {
      this._end();
      this.response = message;
      if (this.#sendClosed || (isError(message) && CLOSING.has(message.code))) {
        this.#client._dropConnection();
      }
    }
    return message;
  }

  /** Shuts down the client's sending side: the handler's `recv()` yields none. */
  async closeSend() {
    if (this.over) throw new ConversationOver();
    if (this.#sendClosed) return;
    this.#sendClosed = true;
    try {
      await this.#client._closeSend();
    } catch (error) {
      this._end();
      throw error;
    }
  }

  /** Reads until the response and resolves to it, skipping messages before it. */
  async wait() {
    while (!this.over) await this.recv();
    return this.response;
  }

  /** Ends the conversation; before the response, that disconnects the client. */
  close() {
    if (!this.over) {
      this._end();
      this.#client._dropConnection();
    }
  }

  async *[Symbol.asyncIterator]() {
    while (!this.over) {
      const message = await this.recv();
      if (!this.over) yield message;
    }
  }

  _end() {
    this.over = true;
    this.#client._conversationEnded(this);
  }
}
