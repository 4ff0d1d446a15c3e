// `add`: the sum of two integers, {"x": 1, "y": 2} -> {"success": true, "solution": 3}.
import { error, handler, required, success } from "./tcpy-guest.js";

export const execute = handler({ x: required, y: required }, ({ x, y }) => {
  if (!Number.isInteger(x) || !Number.isInteger(y)) {
    throw new TypeError("x and y must be integers");
  }
  const solution = x + y;
  if (!Number.isSafeInteger(solution)) {
    return error("the sum is outside the safe integer range");
  }
  return success({ solution });
});
