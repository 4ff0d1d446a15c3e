// tcpy's JavaScript helper: a handler names its params and returns success(...) or
// error(...), as in the 2014 tutorial.
//
//     import { handler, required, success } from "./tcpy-guest.js";
//     export const execute = handler({ x: required, y: required }, ({ x, y }) => success({ solution: x + y }));
//
// send(fields) and recv() talk with the client mid-request. Params missing a required
// name are answered with bad_request before the handler runs; an exception thrown by the
// handler is answered with handler_failed, its message included.
//
// Store.open(name) opens a key-value store the handler's manifest grants ([keyvalue]
// stores): get, set, delete, exists, keys, increment, cas, update and the batch getMany,
// setMany, deleteMany. Values are Uint8Arrays (strings are stored UTF-8; text(bytes)
// decodes one) and failures throw a KeyValueError.
//
//     const visits = Store.open("default").increment("visits", 1); // kept as text: "1", "2", …
import connection from "tcpy:handler/connection@0.1.0";
import atomics from "wasi:keyvalue/atomics@0.2.0-draft2";
import batch from "wasi:keyvalue/batch@0.2.0-draft2";
import store from "wasi:keyvalue/store@0.2.0-draft2";

/** Marks a param without a default: a request without it is a bad request. */
export const required = Symbol("required");

/** The response {"success": true, ...fields}. */
export function success(fields = {}) {
  return { ...fields, success: true };
}

/** The response {"error": true, "message": message, ...fields}. */
export function error(message, fields = {}) {
  return { ...fields, error: true, message };
}

/** Sends one message (an object) to the client; throws if the host refuses it. */
export function send(message) {
  connection.send(JSON.stringify(message));
}

/** The client's next message as an object, or null once the client has closed. */
export function recv() {
  const text = connection.recv();
  return text === undefined || text === null ? null : JSON.parse(text);
}

/**
 * A key-value store operation failed. `kind` says how: "no_such_store", "access_denied"
 * (the manifest does not grant the store) or "other" (a key too long, a value too large,
 * a store that did not answer…); `message` says why.
 */
export class KeyValueError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "KeyValueError";
    this.kind = kind;
  }
}

/** The KeyValueError of a wasi:keyvalue/store `error` ({ tag, val }). */
function storeError(error) {
  switch (error.tag) {
    case "no-such-store":
      return new KeyValueError("no_such_store", "no such store");
    case "access-denied":
      return new KeyValueError("access_denied", "access denied: the handler's manifest does not grant this store");
    default:
      return new KeyValueError("other", error.val);
  }
}

/** `call()`, with the host's error (thrown with the WIT error as `payload`) as a KeyValueError. */
function kv(call) {
  try {
    return call();
  } catch (failure) {
    if (failure?.payload === undefined) throw failure;
    throw storeError(failure.payload);
  }
}

// The component traps on an argument of the wrong type: these throw a TypeError first.

/** `key`, if it is a string. */
function asKey(key) {
  if (typeof key !== "string") throw new TypeError(`a key is a string, not ${typeof key}`);
  return key;
}

/** A value as the store keeps it: a Uint8Array as it is, a string encoded UTF-8. */
function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value !== "string") throw new TypeError(`a value is a string or a Uint8Array, not ${typeof value}`);
  // QuickJS has no TextEncoder: encodeURIComponent writes the UTF-8 bytes as %XX, and
  // unescape turns each into the char of that code.
  return Uint8Array.from(unescape(encodeURIComponent(value)), (char) => char.charCodeAt(0));
}

/** The text of `bytes` from a store, decoded UTF-8 (null stays null); throws a URIError if not UTF-8. */
export function text(bytes) {
  if (bytes === null) return null;
  const escaped = Array.from(bytes, (byte) => `%${byte.toString(16).padStart(2, "0")}`);
  return decodeURIComponent(escaped.join(""));
}

/** How often Store.update reads and tries again before it gives up. */
export const UPDATE_TRIES = 100;

/**
 * An open key-value store. Values are Uint8Arrays (a string given is stored UTF-8; read
 * one back with text()); every method throws a KeyValueError if the store fails.
 */
export class Store {
  #bucket;

  constructor(bucket) {
    this.#bucket = bucket;
  }

  /** Opens the store `name`, which the handler's manifest must grant. */
  static open(name) {
    return new Store(kv(() => store.open(asKey(name))));
  }

  /** The value at `key` (a Uint8Array), or null. */
  get(key) {
    return kv(() => this.#bucket.get(asKey(key)));
  }

  /** Sets `key` to `value` (a string or a Uint8Array). */
  set(key, value) {
    kv(() => this.#bucket.set(asKey(key), asBytes(value)));
  }

  /** Removes `key`; removing a key that is not there is not an error. */
  delete(key) {
    kv(() => this.#bucket.delete(asKey(key)));
  }

  /** Whether `key` is there. */
  exists(key) {
    return kv(() => this.#bucket.exists(asKey(key)));
  }

  /** Every key of the store, in byte order, fetched a page at a time. */
  *keys() {
    let cursor = null;
    do {
      const page = kv(() => this.#bucket.listKeys(cursor));
      yield* page.keys;
      cursor = page.cursor;
    } while (cursor !== null);
  }

  /**
   * Adds `delta` (a safe integer) to the counter at `key` (a missing key counts as 0) and
   * returns its new value. Counters are decimal text, so text(get(key)) reads "42".
   */
  increment(key, delta = 1) {
    if (!Number.isSafeInteger(delta)) throw new TypeError(`a delta is a safe integer, not ${delta}`);
    return kv(() => atomics.increment(this.#bucket, asKey(key), delta));
  }

  /** Prepares a compare-and-swap of `key`: the Cas remembers its value now. */
  cas(key) {
    return new Cas(kv(() => atomics.Cas.new(this.#bucket, asKey(key))));
  }

  /**
   * Sets `key` to `change(its value or null)`, atomically: if another request changes the
   * key in between, `change` runs again on the new value (up to UPDATE_TRIES times).
   * Returns the value written, as a Uint8Array.
   */
  update(key, change) {
    let cas = this.cas(key);
    for (let tries = 0; tries < UPDATE_TRIES; tries++) {
      const value = asBytes(change(cas.current()));
      cas = cas.swap(value);
      if (cas === null) return value;
    }
    throw new KeyValueError("other", `\`${key}\` changed under every one of ${UPDATE_TRIES} tries`);
  }

  /** The values at `keys`, in order (null where absent), read together. */
  getMany(keys) {
    const lowered = keys.map(asKey);
    const found = kv(() => batch.getMany(this.#bucket, lowered));
    return found.map((entry) => (entry === null ? null : entry[1]));
  }

  /** Sets every key to its value (an object, a Map or [key, value] pairs), all or none. */
  setMany(entries) {
    const iterable = typeof entries[Symbol.iterator] === "function";
    const pairs = iterable ? Array.from(entries) : Object.entries(entries);
    const lowered = pairs.map(([key, value]) => [asKey(key), asBytes(value)]);
    kv(() => batch.setMany(this.#bucket, lowered));
  }

  /** Removes every key of `keys`, all or none. */
  deleteMany(keys) {
    const lowered = keys.map(asKey);
    kv(() => batch.deleteMany(this.#bucket, lowered));
  }
}

/** A compare-and-swap in preparation, from Store.cas. */
export class Cas {
  #cas;

  constructor(cas) {
    this.#cas = cas;
  }

  /** The value (a Uint8Array, or null) the key held when this was prepared. */
  current() {
    return kv(() => this.#cas.current());
  }

  /**
   * Writes `value` if the key still holds current(): null when written, or a fresh Cas
   * (holding the key's value now) when another request changed it first. This Cas is
   * used up either way.
   */
  swap(value) {
    const bytes = asBytes(value);
    try {
      atomics.swap(this.#cas, bytes);
      return null;
    } catch (failure) {
      const error = failure?.payload;
      if (error?.tag === "cas-failed") return new Cas(error.val);
      if (error?.tag === "store-error") throw storeError(error.val);
      throw failure;
    }
  }
}

/** Why `params` do not fit `spec` (names with defaults or `required`), or null. */
function unfit(spec, params) {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    return "params must be a JSON object";
  }
  const missing = Object.keys(spec).find((name) => spec[name] === required && !(name in params));
  return missing === undefined ? null : `missing field \`${missing}\``;
}

/**
 * The component's `execute`: binds the params to `spec` (defaults filled in, unknown
 * names dropped), runs `run(params)` and answers its response as JSON text.
 */
export function handler(spec, run) {
  return (paramsJson) => {
    let params;
    try {
      params = JSON.parse(paramsJson);
    } catch (bad) {
      return JSON.stringify(error(`invalid params: ${bad.message}`, { code: "bad_request" }));
    }
    const why = unfit(spec, params);
    if (why !== null) {
      return JSON.stringify(error(`invalid params: ${why}`, { code: "bad_request" }));
    }
    const bound = {};
    for (const name of Object.keys(spec)) bound[name] = name in params ? params[name] : spec[name];
    try {
      return JSON.stringify(run(bound));
    } catch (failure) {
      // QuickJS in the component has no console; where a runtime has one, the stack
      // goes to the host's log.
      globalThis.console?.error(failure?.stack ?? String(failure));
      const what = failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure);
      return JSON.stringify(error(what, { code: "handler_failed" }));
    }
  };
}
