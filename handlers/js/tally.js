// `tally`: a running total, kept in conversation with the client.
//
// The request may give a `start` (default 0). Each client message {"n": <integer>} adds
// n and is answered with {"total": <total>}, until the client sends {"done": true} or
// closes; the response is {"success": true, "total": <total>, "count": <numbers added>}.
import { handler, recv, send, success } from "./tcpy-guest.js";

const EXPECTED = 'expected {"n": number} or {"done": true}';

export const execute = handler({ start: 0 }, ({ start }) => {
  let total = start;
  let count = 0;
  for (let message = recv(); message !== null; message = recv()) {
    if (message.done === true) break;
    const n = message.n;
    if (!Number.isInteger(n)) {
      send({ warning: EXPECTED });
    } else if (!Number.isSafeInteger(total + n)) {
      send({ warning: `adding ${n} would overflow the total ${total}` });
    } else {
      total += n;
      count += 1;
      send({ total });
    }
  }
  return success({ total, count });
});
