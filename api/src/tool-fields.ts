import { z } from "zod";
import { jsonSchemaDocument } from "./structured-output-fields.ts";

/** The stated bounds of the tools a chat request may offer. */
export const toolLimits = {
  tools: 128,
  /** all tool definitions together, as JSON (each tool's parameters are also a schema) */
  toolsChars: 262_144,
} as const;

const functionName = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, underscores or dashes");

const functionDefinition = z.object({
  name: functionName,
  description: z.string().nullish(),
  /** a JSON Schema of the arguments object; absent: no arguments */
  parameters: jsonSchemaDocument.nullish(),
  strict: z.boolean().nullish(),
});

const toolList = <T extends z.ZodType>(item: T) =>
  z
    .array(item)
    .max(toolLimits.tools, `at most ${toolLimits.tools} tools`)
    .refine((tools) => JSON.stringify(tools).length <= toolLimits.toolsChars, {
      message: `the tools are longer than ${toolLimits.toolsChars} characters as JSON`,
      params: { code: "tools_too_large" },
    });

const namedFunction = z.object({ name: functionName });

/** OpenAI's tool calling, and its legacy `functions` / `function_call` form. */
export const toolFields = {
  tools: toolList(
    z.object({ type: z.literal("function"), function: functionDefinition }),
  ).nullish(),
  tool_choice: z
    .union([
      z.enum(["none", "auto", "required"]),
      z.object({ type: z.literal("function"), function: namedFunction }),
    ])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  functions: toolList(functionDefinition).nullish(),
  function_call: z.union([z.enum(["none", "auto"]), namedFunction]).nullish(),
};

type ToolBody = {
  [K in keyof typeof toolFields]?: z.infer<(typeof toolFields)[K]>;
};

/** Request-level checks: one form at a time, and a named function must be offered. */
export function checkToolChoice(body: ToolBody, ctx: z.RefinementCtx): void {
  if (body.tools != null && body.functions != null) {
    ctx.addIssue({
      code: "custom",
      path: ["functions"],
      message: "give either tools or the legacy functions, not both",
    });
    return;
  }
  const offered = new Set([
    ...(body.tools ?? []).map((tool) => tool.function.name),
    ...(body.functions ?? []).map((fn) => fn.name),
  ]);
  const named: [string, string | undefined][] = [
    [
      "tool_choice",
      typeof body.tool_choice === "object" ? body.tool_choice?.function.name : undefined,
    ],
    [
      "function_call",
      typeof body.function_call === "object" ? body.function_call?.name : undefined,
    ],
  ];
  for (const [param, name] of named) {
    if (name !== undefined && !offered.has(name)) {
      ctx.addIssue({
        code: "custom",
        path: [param],
        message: `names the function ${JSON.stringify(name)}, which is not among the tools`,
        params: { code: "unknown_tool" },
      });
    }
  }
  if (
    offered.size === 0 &&
    (body.tool_choice === "required" || typeof body.tool_choice === "object")
  ) {
    ctx.addIssue({
      code: "custom",
      path: ["tool_choice"],
      message: "asks for a tool call, but the request offers no tools",
    });
  }
}
