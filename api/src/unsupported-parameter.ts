import { z } from "zod";

/**
 * An OpenAI parameter lorafleet does not implement: only its "off" values pass, anything
 * else is refused with code `unsupported_parameter` naming it (a client asking for tools or
 * JSON mode must not get free text back as if it had been honoured).
 *
 * @example audio: unsupported(() => false, "audio output")
 */
export const unsupported = (isOff: (value: unknown) => boolean, what: string) =>
  z
    .unknown()
    .refine((value) => value == null || isOff(value), {
      message: `${what} is not supported by this backend`,
      params: { code: "unsupported_parameter" },
    })
    .optional();

export const isEmptyObject = (value: unknown) =>
  typeof value === "object" &&
  value !== null &&
  !Array.isArray(value) &&
  Object.keys(value).length === 0;
