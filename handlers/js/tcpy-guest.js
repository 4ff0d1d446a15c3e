// tcpy's JavaScript helper: a handler names its params and returns success(...) or
// error(...), as in the 2014 tutorial.
//
//     import { handler, required, success } from "./tcpy-guest.js";
//     export const execute = handler({ x: required, y: required }, ({ x, y }) => success({ solution: x + y }));
//
// send(fields) and recv() talk with the client mid-request. Params missing a required
// name are answered with bad_request before the handler runs; an exception thrown by the
// handler is answered with handler_failed, its message included.
import connection from "tcpy:handler/connection@0.1.0";

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
