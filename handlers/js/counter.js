// `counter`: a named counter in the key-value store "default", which `counter.toml`
// grants. {"name": "visits"} -> {"success": true, "name": "visits", "value": 1}, then 2,
// 3, … across requests and restarts; `name` defaults to "hits", and `by` (default 1) is
// what to add.
import { error, handler, KeyValueError, Store, success } from "./tcpy-guest.js";

export const execute = handler({ name: "hits", by: 1 }, ({ name, by }) => {
  let value;
  try {
    value = Store.open("default").increment(name, by);
  } catch (e) {
    if (!(e instanceof KeyValueError)) throw e;
    return error(e.message);
  }
  return success({ name, value });
});
