// GET /v1/models: the base model and the adapters this backend has registered, as
// vLLM lists them (an adapter's `parent` is the base model).
import type { Context } from "hono";
import type { AppContext } from "./app-context.ts";

export function listModels(app: AppContext) {
  return function listModelsHandler(c: Context) {
    const created = Math.floor(Date.now() / 1000);
    const card = (id: string, parent: string | null) => ({
      id,
      object: "model",
      created,
      owned_by: "lorafleet",
      root: parent ?? id,
      parent,
    });
    return c.json({
      object: "list",
      data: [
        card(app.servedModelName, null),
        ...app.adapters.names().map((name) => card(name, app.servedModelName)),
      ],
    });
  };
}
