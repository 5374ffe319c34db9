// vLLM's adapter endpoints: POST /v1/load_lora_adapter {lora_name, lora_path} registers
// a PEFT directory under a name (without a path: one the adapter store knows) once the
// shared adapter rules accept it (400 adapter_invalid with their message otherwise);
// POST /v1/unload_lora_adapter {lora_name} forgets it once no request needs it.
// Weights reach the GPU pool when a request first uses the name.
import type { Context } from "hono";
import { z } from "zod";
import { AdapterInUseError } from "../engine/index.ts";
import { AdapterBusyError, AdapterLoadError } from "../serving/errors.ts";
import type { AppContext } from "./app-context.ts";
import { ApiError } from "./openai-error.ts";
import { parseBody } from "./parse-body.ts";

/** vLLM's POST /v1/load_lora_adapter */
const LoadAdapterRequestSchema = z.object({
  lora_name: z.string().min(1).max(200),
  lora_path: z.string().min(1).nullish(),
});

/** vLLM's POST /v1/unload_lora_adapter */
const UnloadAdapterRequestSchema = z.object({
  lora_name: z.string().min(1).max(200),
});

export function loadLoraAdapter(app: AppContext) {
  return async function loadLoraAdapterHandler(c: Context) {
    const body = await parseBody(c, LoadAdapterRequestSchema, app.maxBodyBytes);
    if (body.lora_name === app.servedModelName) {
      throw new ApiError(400, "lora_name must differ from the base model's name", {
        param: "lora_name",
      });
    }
    try {
      if (body.lora_path == null) await app.adapters.resolve(body.lora_name);
      else await app.adapters.register(body.lora_name, body.lora_path);
    } catch (error) {
      if (!(error instanceof AdapterLoadError)) throw error;
      const param = body.lora_path == null ? "lora_name" : "lora_path";
      throw new ApiError(400, error.message, { param, code: "adapter_invalid" });
    }
    app.logger.info({ adapter: body.lora_name }, "adapter registered");
    return c.text(`Success: LoRA adapter '${body.lora_name}' added successfully.`);
  };
}

export function unloadLoraAdapter(app: AppContext) {
  return async function unloadLoraAdapterHandler(c: Context) {
    const body = await parseBody(c, UnloadAdapterRequestSchema, app.maxBodyBytes);
    if (!app.adapters.names().includes(body.lora_name)) {
      throw new ApiError(404, `The lora adapter '${body.lora_name}' cannot be found.`, {
        param: "lora_name",
        code: "model_not_found",
      });
    }
    try {
      app.unloadAdapter(body.lora_name);
    } catch (error) {
      if (error instanceof AdapterInUseError) throw new AdapterBusyError(error.message);
      throw error;
    }
    app.adapters.unregister(body.lora_name);
    app.logger.info({ adapter: body.lora_name }, "adapter unloaded");
    return c.text(`Success: LoRA adapter '${body.lora_name}' removed successfully.`);
  };
}
