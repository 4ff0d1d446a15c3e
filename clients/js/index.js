// tcpy: a JavaScript (Node >= 20) client for tcpy hosts. No dependencies.
//
// The protocol is the host's frame mode with JSON bodies (docs/protocol.md): each
// message is a 4-byte big-endian length, then that many bytes of a JSON object.

import net from 'node:net';

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
const CLOSING = new Set(['idle_timeout', 'read_timeout', 'shutting_down', 'busy', 'too_large']);
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

  constructor(socket, maxMessage) {
    this.#socket = socket;
    this.#maxMessage = maxMessage;
    socket.on('data', (data) => this.#onData(data));
    socket.on('end', () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on('error', (error) => {
      this.#failure ??= new ConnectionFailed(`the connection failed: ${error.message}`, error);
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
        this.#failure = new MessageTooLarge(length, this.#maxMessage, 'incoming');
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

  /**
   * @param {object} [options]
   * @param {string} [options.host] default `localhost`
   * @param {number} [options.port] default 7272
   * @param {number|null} [options.timeout] ms each step may take (connect, send one
   *   message, receive one message); `null` waits forever. Default 30 000.
   * @param {number} [options.maxMessage] largest message sent or accepted, bytes (default 1 MiB)
   */
  constructor({ host = DEFAULT_HOST, port = DEFAULT_PORT, timeout = DEFAULT_TIMEOUT, maxMessage = DEFAULT_MAX_MESSAGE } = {}) {
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
  }

  /** `host:port` (`[::1]:7272` for an IPv6 literal). */
  get address() {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Whether the client holds a connection (the host may have closed it since). */
  get connected() {
    return this.#conn !== null;
  }

  /** Connects, unless already connected. */
  async connect() {
    if (this.#conn === null) {
      this.#conn = await this.#open();
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
      const socket = net.createConnection({ host: this.host, port: this.port });
      let timer = null;
      const fail = (error) => {
        if (timer !== null) clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      if (this.timeout !== null) {
        timer = setTimeout(() => fail(new TimeoutError('connect', this.timeout, address)), this.timeout);
      }
      socket.once('error', (error) => fail(new ConnectError(address, error)));
      socket.once('connect', () => {
        if (timer !== null) clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        resolve(new Connection(socket, this.maxMessage));
      });
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
