import { describe, expect, it } from "vitest";
import { registerBaseModel, tinyModel } from "../../test/helpers/gateway-client.ts";
import {
  authenticatedAs,
  bareApp,
  principalWith,
  send,
} from "../../test/helpers/middleware-app.ts";
import { createGatewayState } from "../app.ts";
import { type InferenceCall, inferenceRequest, maxTimeoutMs } from "./inference-request.ts";

type ErrorBody = { error: { message: string; param: string | null; code: string } };
const now = 1_800_000_000_000;

/** A bare app reading chat requests for one tenant, answering what `inferenceRequest` set. */
function reading() {
  const app = bareApp();
  app.post(
    "/",
    authenticatedAs(principalWith()),
    inferenceRequest("/v1/chat/completions", {
      models: createGatewayState().models,
      now: () => now,
    }),
    (c) => c.json(c.get("inference")),
  );
  return (body: unknown, headers: Record<string, string> = {}) =>
    send(app, "/", { body: JSON.stringify(body), headers });
}

describe("inferenceRequest", () => {
  it("sets the body as the shared schema reads it, the client's JSON, the model and the estimate", async () => {
    const model = await registerBaseModel(tinyModel());
    const json = {
      model: model.name,
      messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }],
      stop: "END",
      max_tokens: 4,
      lorafleet: { tenant: "not the client's to set" },
    };
    const call = (await (await reading()(json)).json()) as InferenceCall;
    expect(call).toEqual({
      endpoint: "/v1/chat/completions",
      json,
      body: {
        model: model.name,
        messages: [{ role: "user", content: "hi" }],
        stop: ["END"],
        max_tokens: 4,
      },
      target: {
        baseModel: model.name,
        bounds: { templateTokensPerMessage: 64, contextLength: model.max_position_embeddings },
        adapter: null,
      },
      // the prompt's bound: "user" and "hi" are 6 UTF-8 bytes, + 64 template tokens for the
      // message and 64 for the conversation; + max_tokens
      estimate: { prompt: 134, total: 138 },
      deadlineMs: null,
    });
  });

  it("refuses a body the backend would refuse, in the backend's words, before resolving its model", async () => {
    const response = await reading()({
      model: "no-such-model",
      messages: [{ role: "user", content: "hi" }],
      logit_bias: { "50256": -100 },
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as ErrorBody).error).toEqual({
      message: "logit_bias: logit_bias is not supported by this backend",
      type: "invalid_request_error",
      param: "logit_bias",
      code: "unsupported_parameter",
    });
  });

  it("turns x-lorafleet-timeout-ms into an absolute deadline, and refuses bad ones", async () => {
    const model = await registerBaseModel(tinyModel());
    const read = reading();
    const body = { model: model.name, messages: [{ role: "user", content: "hi" }] };
    const call = (await (
      await read(body, { "x-lorafleet-timeout-ms": "5000" })
    ).json()) as InferenceCall;
    expect(call.deadlineMs).toBe(now + 5000);
    for (const bad of ["0", "-5", "soon", "1.5", String(maxTimeoutMs + 1)]) {
      const response = await read(body, { "x-lorafleet-timeout-ms": bad });
      expect(response.status).toBe(400);
    }
  });

  it("refuses a model the tenant cannot use with 404", async () => {
    const response = await reading()({
      model: "nope",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(response.status).toBe(404);
    expect(((await response.json()) as ErrorBody).error.code).toBe("model_not_found");
  });
});
