// Type declarations of the tcpy JavaScript client (index.js).

import type { Socket } from 'node:net';
import type { ConnectionOptions, TLSSocket } from 'node:tls';

/** A protocol message: a JSON object. */
export type Message = { [key: string]: unknown };

/** A response: `{ success: true, ... }` or `{ error: true, ... }`. */
export type Response = Message & ({ success: true } | { error: true });

/** An error response as the host sends it. */
export interface ErrorResponse extends Message {
  error: true;
  code?: string;
  message?: string;
}

/** The host's own error codes (handlers may send others). */
export type HostErrorCode =
  | 'bad_request'
  | 'unknown_command'
  | 'too_large'
  | 'timeout'
  | 'handler_failed'
  | 'busy'
  | 'idle_timeout'
  | 'read_timeout'
  | 'shutting_down'
  | 'unauthorized'
  | 'forbidden';

export const DEFAULT_HOST: 'localhost';
export const DEFAULT_PORT: 7272;
/** Milliseconds each step may take unless told otherwise. */
export const DEFAULT_TIMEOUT: number;
/** Bytes: the host's default `--max-message`. */
export const DEFAULT_MAX_MESSAGE: number;

export interface ClientOptions {
  /** Default `localhost`. */
  host?: string;
  /** Default 7272. */
  port?: number;
  /** Ms each step (connect, send one message, receive one message) may take; `null` waits forever. Default 30 000. */
  timeout?: number | null;
  /** Largest message sent or accepted, in bytes. Default 1 MiB. */
  maxMessage?: number;
  /**
   * Speak TLS, to a host run with `--tls-cert`. `true`: Node's CAs, no client
   * certificate. Default: plain TCP.
   */
  tls?: TlsOptions | boolean | null;
  /**
   * For a host run with `--auth-tokens`: sent as `{"cmd": "auth", "token": …}` on every
   * new connection. A refusal rejects `connect()` (and `execute`, `call`) with a
   * `ServerError` whose code is `unauthorized`. Not read from the environment.
   */
  token?: string | null;
}

/**
 * TLS settings: PEM strings or Buffers (`fs.readFileSync('ca.pem')`). Other
 * `tls.connect` options pass through; TLS 1.2 at least unless `minVersion` says otherwise.
 */
export interface TlsOptions extends Omit<ConnectionOptions, 'host' | 'port' | 'socket' | 'path'> {
  /** The CAs the host's certificate must be signed by. Default: Node's. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** The client's certificate chain, for a host run with `--tls-client-ca`; needs `key`. */
  cert?: string | Buffer | Array<string | Buffer>;
  /** The private key of `cert`. */
  key?: string | Buffer | Array<string | Buffer>;
  /** The name the host's certificate must carry. Default: `host`. */
  servername?: string;
}

/** Whether `message` ends its request (`success: true` or `error: true`). */
export function isResponse(message: unknown): message is Response;

/** A client of a tcpy host: one kept connection, requests one after the other. */
export class Client {
  constructor(options?: ClientOptions);
  readonly host: string;
  readonly port: number;
  /** Ms per step, or `null`; may be changed between calls. */
  timeout: number | null;
  readonly maxMessage: number;
  /** Whether the client speaks TLS. */
  readonly tls: boolean;
  /** The identity the host named for the token on the last connection, or `null`. */
  readonly identity: string | null;
  /** `host:port`. */
  readonly address: string;
  /** Whether the client holds a connection. */
  readonly connected: boolean;
  /** The raw socket (a `TLSSocket` over TLS), or `null`: writing to it puts the client out of step. */
  readonly socket: Socket | TLSSocket | null;
  /**
   * Connects, unless already connected, makes the TLS handshake and authenticates.
   * Rejects with `ConnectError`, `TlsError`, `TimeoutError`, or a `ServerError` with
   * code `unauthorized` when the host refuses the token.
   */
  connect(): Promise<void>;
  /** Closes the connection, if any. */
  close(): void;
  /** The 2014 name of `close()`. */
  disconnect(): void;
  /** Sends one message as it is (the raw protocol). */
  send(message: Message): Promise<void>;
  /** The next message from the host, whatever it is. */
  recv(): Promise<Message>;
  /** Runs `cmd` with `params`; resolves to the response as it came, error responses included. */
  execute(cmd: string, params?: Message | null): Promise<Response>;
  /** Like `execute`, but an error response rejects with a `ServerError`. */
  call(cmd: string, params?: Message | null): Promise<Message & { success: true }>;
  /** Sends the request of a conversation and resolves to it. */
  conversation(cmd: string, params?: Message | null): Promise<Conversation>;
}

/** A request in progress whose handler talks with the client before it answers. */
export class Conversation implements AsyncIterable<Message> {
  /** Whether the conversation has ended: its response arrived, or it failed. */
  readonly over: boolean;
  /** The response, once it has arrived. */
  readonly response: Response | null;
  /** Sends one message to the handler. */
  send(message: Message): Promise<void>;
  /** The handler's next message or its response. */
  recv(): Promise<Message>;
  /** Shuts down the client's sending side: the handler's `recv()` yields none. */
  closeSend(): Promise<void>;
  /** Reads until the response and resolves to it. */
  wait(): Promise<Response>;
  /** Ends the conversation; before the response, that disconnects the client. */
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
}

/** Base class of every error of the client. */
export class TcpyError extends Error {
  /** `TCPY_…` for the client's own errors; the wire code for a `ServerError`. */
  code: string | null;
}
export class ConnectError extends TcpyError {
  code: 'TCPY_CONNECT';
  address: string;
}
export class ConnectionFailed extends TcpyError {
  code: 'TCPY_CONNECTION_FAILED';
}
export class ConnectionClosed extends TcpyError {
  code: 'TCPY_CLOSED';
}
/** TLS failed (handshake, alert, or a TLS answer to a plaintext client); `cause` is Node's error. */
export class TlsError extends TcpyError {
  code: 'TCPY_TLS';
}
export class NotConnected extends TcpyError {
  code: 'TCPY_NOT_CONNECTED';
}
export class TimeoutError extends TcpyError {
  code: 'TCPY_TIMEOUT';
  operation: 'connect' | 'send' | 'recv';
  /** The timeout, in ms. */
  after: number;
}
export class ProtocolError extends TcpyError {
  code: 'TCPY_PROTOCOL';
}
export class MessageTooLarge extends TcpyError {
  code: 'TCPY_TOO_LARGE';
  size: number;
  limit: number;
}
export class EncodeError extends TcpyError {
  code: 'TCPY_ENCODE';
}
export class InvalidParams extends TcpyError {
  code: 'TCPY_INVALID_PARAMS';
}
export class UnexpectedMessage extends TcpyError {
  code: 'TCPY_UNEXPECTED_MESSAGE';
  received: Message;
}
export class ConversationOver extends TcpyError {
  code: 'TCPY_CONVERSATION_OVER';
}
export class SendClosed extends TcpyError {
  code: 'TCPY_SEND_CLOSED';
}
export class ClientBusy extends TcpyError {
  code: 'TCPY_CLIENT_BUSY';
}
/** An error response, thrown by `call`. */
export class ServerError extends TcpyError {
  constructor(response: ErrorResponse);
  /** The response's code (`HostErrorCode` or a handler's own), or `null`. */
  code: HostErrorCode | (string & {}) | null;
  /** The response's `message`, or the response as JSON when it has none. */
  serverMessage: string;
  response: ErrorResponse;
  /** Whether the host says the request did not run (`busy`, `idle_timeout`, `shutting_down`). */
  notRun: boolean;
}
