import { ApiError } from "../errors.ts";

/** A rejected adapter upload: always a 4xx naming what is wrong with which file. */
export function adapterError(
  code: string,
  message: string,
  status: 400 | 409 | 403 | 413 | 415 = 400,
): ApiError {
  return new ApiError(status, code, message);
}
