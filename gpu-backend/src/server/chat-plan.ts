// A chat request made ready to generate: the prompt through the chat template (with its
// tools), the grammar its output must follow (response_format / structured_outputs, or
// the calls its tools allow) and what a refusal of that grammar names.
import type { ChatCompletionRequest } from "@lorafleet/api";
import { isGrammarRefusal } from "../executor/errors.ts";
import { type GrammarOrigin, grammarRefusal } from "../structured/grammar-errors.ts";
import { type OutputConstraint, outputConstraint } from "../structured/output-grammar.ts";
import { checkSchema } from "../structured/schema-check.ts";
import { StructuredOutputError } from "../structured/structured-output-error.ts";
import { callGrammar } from "../tool-calls/call-grammar.ts";
import { templateInput } from "../tool-calls/tool-prompt.ts";
import { callableTools, type ToolRequest, toolRequestOf } from "../tool-calls/tools.ts";
import type { AppContext } from "./app-context.ts";
import { encodePrompt, FREE_TEXT, type OutputShape } from "./generation-request.ts";
import { ApiError } from "./openai-error.ts";

export interface ChatPlan {
  promptIds: number[];
  output: OutputShape;
  /** the request's tools, null when it offers none */
  tools: ToolRequest | null;
  /** what a refusal of the grammar names; null without one */
  origin: GrammarOrigin | null;
}

/** Throws ApiError / ChatTemplateError / StructuredOutputError for what cannot be served. */
export function planChat(app: AppContext, body: ChatCompletionRequest): ChatPlan {
  const template = app.tokenizer.chatTemplate;
  if (template === null) {
    throw new ApiError(400, "this model has no chat template; use /v1/completions", {
      code: "no_chat_template",
    });
  }
  const format = app.toolCallFormat;
  const tools = toolRequestOf(body);
  const constraint = outputConstraint(body);
  const input = templateInput(body.messages, tools, format, template.takesTools);
  const prompt = app.tokenizer.chatPrompt(
    input.messages,
    body.add_generation_prompt ?? true,
    input.tools,
  );
  const promptIds = encodePrompt(app.tokenizer, prompt, app.serving.admission);
  if (tools === null || tools.choice === "none") {
    return {
      promptIds,
      output:
        constraint === null ? FREE_TEXT : { grammar: constraint.spec, keepSpecialTokens: false },
      tools,
      origin: constraint === null ? null : { param: constraint.param, schema: constraint.schema },
    };
  }
  return { promptIds, ...toolPlan(app, tools, constraint), tools };
}

function toolPlan(
  app: AppContext,
  tools: ToolRequest,
  constraint: OutputConstraint | null,
): Pick<ChatPlan, "output" | "origin"> {
  if (constraint !== null && constraint.spec.kind !== "json_schema") {
    throw new StructuredOutputError(
      `${constraint.param}: with tools, only a JSON answer (response_format) can be constrained`,
      constraint.param,
      "unsupported_parameter",
    );
  }
  const paramOf = (index: number) =>
    tools.legacy ? `functions[${index}].parameters` : `tools[${index}].function.parameters`;
  for (const tool of callableTools(tools)) {
    if (tool.parameters !== null) checkSchema(tool.parameters, paramOf(tools.tools.indexOf(tool)));
  }
  const format = app.toolCallFormat;
  const specialId = (text: string) => app.tokenizer.specialTokenId(text);
  const grammar = callGrammar(format, tools, specialId, constraint?.schema ?? null);
  if (grammar === null) return { output: FREE_TEXT, origin: null };
  return {
    output: { grammar: grammar.spec, keepSpecialTokens: specialId(format.trigger) !== null },
    origin: {
      param: tools.legacy ? "functions" : "tools",
      schema: constraint?.schema ?? null,
      tools: {
        atLine: grammar.toolAtLine,
        schemas: tools.tools.map((tool) => tool.parameters),
        param: paramOf,
      },
    },
  };
}

/** A refused grammar in the words of the request that asked for it; other errors as they are. */
export function reworded(error: unknown, origin: GrammarOrigin | null): unknown {
  if (!isGrammarRefusal(error) || origin === null) return error;
  return grammarRefusal(error.reason, error.code as "grammar_invalid", origin);
}
