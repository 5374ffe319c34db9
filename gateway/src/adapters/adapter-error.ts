import { AdapterRuleError } from "@lorafleet/api";
import { ApiError } from "../errors.ts";

/** A rejected adapter upload: always a 4xx naming what is wrong with which file. */
export function adapterError(
  code: string,
  message: string,
  status: 400 | 409 | 403 | 413 | 415 = 400,
): ApiError {
  return new ApiError(status, code, message);
}

/**
 * Runs `check` (the shared adapter rules, @lorafleet/api): a rule it finds broken is
 * refused with that rule's code and message, the ones the backends give.
 */
export function underAdapterRules<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof AdapterRuleError)) throw error;
    throw adapterError(error.code, error.message, error.code === "adapter_too_large" ? 413 : 400);
  }
}
