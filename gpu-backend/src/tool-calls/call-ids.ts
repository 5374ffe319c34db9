// Call ids as the model families' clients expect them.
import { randomBytes } from "node:crypto";

const ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

function alphanumeric(length: number): string {
  const bytes = randomBytes(length);
  return Array.from(bytes, (b) => ALPHANUMERIC[b % ALPHANUMERIC.length]).join("");
}

/** OpenAI's shape: `call_` and 24 alphanumerics. */
export const openAiCallId = () => `call_${alphanumeric(24)}`;

/** Mistral's chat templates refuse any id but 9 alphanumerics. */
export const mistralCallId = () => alphanumeric(9);
