// A request's tools as one shape, from OpenAI's `tools` / `tool_choice` /
// `parallel_tool_calls` or their legacy form `functions` / `function_call`.

/** A JSON Schema document (an object, or true / false). */
export type JsonSchema = Record<string, unknown> | boolean;

export interface ToolDefinition {
  name: string;
  description: string | null;
  /** the arguments object's schema; null = no arguments */
  parameters: JsonSchema | null;
}

/** "none": no calls; "auto": the model chooses; "required": at least one; a name: that one. */
export type ToolChoice = "none" | "auto" | "required" | { name: string };

export interface ToolRequest {
  tools: ToolDefinition[];
  choice: ToolChoice;
  /** more than one call in an answer */
  parallel: boolean;
  /** asked with `functions`: answered with `function_call`, one call at most */
  legacy: boolean;
}

/** A call the model made; `arguments` is the JSON text of its arguments object. */
export interface ToolCall {
  name: string;
  arguments: string;
}

/** The fields of a validated chat body read here (@lorafleet/api's schema). */
export interface ToolFieldsBody {
  tools?:
    | {
        function: {
          name: string;
          description?: string | null | undefined;
          parameters?: JsonSchema | null | undefined;
        };
      }[]
    | null
    | undefined;
  tool_choice?: "none" | "auto" | "required" | { function: { name: string } } | null | undefined;
  parallel_tool_calls?: boolean | null | undefined;
  functions?:
    | {
        name: string;
        description?: string | null | undefined;
        parameters?: JsonSchema | null | undefined;
      }[]
    | null
    | undefined;
  function_call?: "none" | "auto" | { name: string } | null | undefined;
}

/**
 * The request's tools, or null when it offers none (an empty list is none).
 *
 * @example toolRequestOf({ tools: [{ function: { name: "f" } }], tool_choice: "required" })
 *   // { tools: [{ name: "f", ... }], choice: "required", parallel: true, legacy: false }
 */
export function toolRequestOf(body: ToolFieldsBody): ToolRequest | null {
  const definition = (fn: {
    name: string;
    description?: string | null | undefined;
    parameters?: JsonSchema | null | undefined;
  }): ToolDefinition => ({
    name: fn.name,
    description: fn.description ?? null,
    parameters: fn.parameters ?? null,
  });
  if (body.functions != null && body.functions.length > 0) {
    const call = body.function_call ?? "auto";
    return {
      tools: body.functions.map(definition),
      choice: typeof call === "string" ? call : { name: call.name },
      parallel: false,
      legacy: true,
    };
  }
  if (body.tools == null || body.tools.length === 0) return null;
  const choice = body.tool_choice ?? "auto";
  return {
    tools: body.tools.map((tool) => definition(tool.function)),
    choice: typeof choice === "string" ? choice : { name: choice.function.name },
    parallel: body.parallel_tool_calls ?? true,
    legacy: false,
  };
}

/** The tools a choice lets the model call. */
export function callableTools(request: ToolRequest): ToolDefinition[] {
  const { choice, tools } = request;
  if (choice === "none") return [];
  return typeof choice === "object" ? tools.filter((t) => t.name === choice.name) : tools;
}
