// What every reliability test asks of a running backend: raw requests (any bytes), the
// OpenAI error shape, "still serves a normal request", and /metrics read as numbers,
// including "idle: nothing left running, no KV pages, no adapter pins".
import { expect } from "vitest";

export interface OpenAIError {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** POSTs raw bytes or a JSON value; never throws on a status. */
export function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  const raw =
    typeof body === "string" || body instanceof Uint8Array || body instanceof ReadableStream
      ? body
      : JSON.stringify(body);
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: raw as BodyInit,
    duplex: "half",
  } as RequestInit);
}

/** The response is `status` with OpenAI's error body; `code` and `param` checked when given. */
export async function expectOpenAIError(
  response: Response,
  status: number,
  expected: { code?: string | null; param?: string | null } = {},
): Promise<OpenAIError["error"]> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  const body = JSON.parse(text) as OpenAIError;
  expect(Object.keys(body)).toEqual(["error"]);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(typeof body.error.type).toBe("string");
  expect(body.error).toHaveProperty("param");
  expect(body.error).toHaveProperty("code");
  if (expected.code !== undefined) expect(body.error.code, text).toBe(expected.code);
  if (expected.param !== undefined) expect(body.error.param, text).toBe(expected.param);
  return body.error;
}

/** A small greedy chat request (base model or `model`) answers 200 with usage. */
export async function expectServes(
  baseUrl: string,
  model = "tiny-llama",
  headers: Record<string, string> = {},
): Promise<void> {
  const response = await post(
    `${baseUrl}/v1/chat/completions`,
    { model, messages: [{ role: "user", content: "still there?" }], max_tokens: 2, temperature: 0 },
    headers,
  );
  const text = await response.text();
  expect(response.status, text).toBe(200);
  const body = JSON.parse(text) as { usage: { completion_tokens: number } };
  expect(body.usage.completion_tokens).toBeGreaterThan(0);
}

/** Every sample of /metrics as `name{labels}` -> value (`secret`: the backend's, when it has one). */
export async function readMetrics(
  baseUrl: string,
  secret: string | null = null,
): Promise<Map<string, number>> {
  const headers: Record<string, string> =
    secret === null ? {} : { authorization: `Bearer ${secret}` };
  const response = await fetch(`${baseUrl}/metrics`, { headers });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

/** The gauges that must all be zero once nothing runs. */
export const IDLE_GAUGES = [
  "lorafleet_running_requests",
  "lorafleet_queue_depth",
  'lorafleet_pool_pages{use="kv"}',
  'lorafleet_pool_pages{use="fenced"}',
  "lorafleet_adapter_pins",
] as const;

/** Waits until every idle gauge is 0 and /health's load is 0; fails with the last values. */
export async function expectIdle(
  baseUrl: string,
  withinMs = 10_000,
  secret: string | null = null,
): Promise<void> {
  const deadline = Date.now() + withinMs;
  let last: Record<string, number | undefined> = {};
  while (Date.now() < deadline) {
    const metrics = await readMetrics(baseUrl, secret);
    const health = (await (await fetch(`${baseUrl}/health`)).json()) as { load: number };
    last = Object.fromEntries([
      ...IDLE_GAUGES.map((name) => [name, metrics.get(name)]),
      ["health.load", health.load],
    ]);
    if (Object.values(last).every((value) => value === 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(last, "the backend did not return to idle").toEqual(
    Object.fromEntries(Object.keys(last).map((key) => [key, 0])),
  );
}
