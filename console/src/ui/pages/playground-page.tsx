import { useRef, useState } from "preact/hooks";
import {
  type ChatMessage,
  type ChatRequest,
  streamChat,
  type ToolCall,
  withToolCallDelta,
} from "../../api/chat.ts";
import { curlSnippet, openaiJsSnippet, openaiPythonSnippet } from "../../api/snippets.ts";
import { listModels } from "../../api/tenant-api.ts";
import type { Model } from "../../api/types.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { can, clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";

type Params = { maxTokens: number; temperature: number; topP: number; seed: string; stop: string };

/** What the answer must be: JSON of a schema, and the tools it may call (JSON texts, "" = none). */
type Shape = {
  schema: string;
  tools: string;
  toolChoice: "auto" | "required" | "none";
  parallel: boolean;
};

const SCHEMA_EXAMPLE = JSON.stringify(
  {
    type: "object",
    properties: { city: { type: "string", maxLength: 20 }, celsius: { type: "integer" } },
    required: ["city", "celsius"],
    additionalProperties: false,
  },
  null,
  2,
);

const TOOLS_EXAMPLE = JSON.stringify(
  [
    {
      type: "function",
      function: {
        name: "get_weather",
        description: "The weather in a city",
        parameters: {
          type: "object",
          properties: { city: { type: "string", maxLength: 20 } },
          required: ["city"],
          additionalProperties: false,
        },
      },
    },
  ],
  null,
  2,
);

/** The request fields of a shape, or why it cannot be sent (a JSON text that does not parse). */
function shapeFields(shape: Shape): { fields: Partial<ChatRequest>; problem: string | null } {
  const fields: Partial<ChatRequest> = {};
  try {
    if (shape.schema.trim() !== "") {
      const schema: unknown = JSON.parse(shape.schema);
      fields.response_format = { type: "json_schema", json_schema: { name: "answer", schema } };
    }
  } catch (error) {
    return { fields: {}, problem: `The JSON schema is not JSON: ${(error as Error).message}` };
  }
  try {
    if (shape.tools.trim() !== "") {
      const tools: unknown = JSON.parse(shape.tools);
      if (!Array.isArray(tools)) return { fields: {}, problem: "The tools must be a JSON list" };
      fields.tools = tools;
      fields.tool_choice = shape.toolChoice;
      if (!shape.parallel) fields.parallel_tool_calls = false;
    }
  } catch (error) {
    return { fields: {}, problem: `The tools are not JSON: ${(error as Error).message}` };
  }
  return { fields, problem: null };
}

const snippetKinds = {
  curl: curlSnippet,
  "openai (JS)": openaiJsSnippet,
  "openai (Python)": openaiPythonSnippet,
} as const;
type SnippetKind = keyof typeof snippetKinds;

function requestOf(
  model: string,
  system: string,
  messages: ChatMessage[],
  params: Params,
  shape: Shape,
): ChatRequest {
  const request: ChatRequest = {
    model,
    messages: system.trim() ? [{ role: "system", content: system }, ...messages] : messages,
    max_tokens: params.maxTokens,
    temperature: params.temperature,
    top_p: params.topP,
    stream: true,
    ...shapeFields(shape).fields,
  };
  if (params.seed.trim() !== "") request.seed = Number(params.seed);
  const stops = params.stop.split("\n").filter((s) => s !== "");
  if (stops.length > 0) request.stop = stops;
  return request;
}

/** Chat with a base model or one of the tenant's adapters, streamed, with the same request as code. */
export function PlaygroundPage({ session }: { session: Session }) {
  const models = useAsync(() => listModels(clientOf(session)), [session.token]);
  if (!can(session, "inference")) {
    return <Empty>This key lacks the inference scope, so it cannot chat.</Empty>;
  }
  if (models.data === null) {
    return models.error ? <ErrorNotice error={models.error} /> : <Loading what="models" />;
  }
  if (models.data.length === 0) {
    return <Empty>No models yet: the operator has not registered a base model.</Empty>;
  }
  return <Chat session={session} models={models.data} />;
}

function Chat({ session, models }: { session: Session; models: Model[] }) {
  const [model, setModel] = useState(models[0]?.id ?? "");
  const [system, setSystem] = useState("");
  const [draft, setDraft] = useState("");
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [params, setParams] = useState<Params>({
    maxTokens: 64,
    temperature: 0.7,
    topP: 1,
    seed: "",
    stop: "",
  });
  const [shape, setShape] = useState<Shape>({
    schema: "",
    tools: "",
    toolChoice: "auto",
    parallel: true,
  });
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [usageLine, setUsageLine] = useState("");
  const [snippet, setSnippet] = useState<SnippetKind>("curl");
  const abort = useRef<AbortController | null>(null);

  const { problem } = shapeFields(shape);

  async function send(event: Event) {
    event.preventDefault();
    if (draft.trim() === "" || streaming || problem !== null) return;
    const history: ChatMessage[] = [...messages, { role: "user", content: draft }];
    setMessages([...history, { role: "assistant", content: "" }]);
    setDraft("");
    setError(null);
    setUsageLine("");
    setStreaming(true);
    abort.current = new AbortController();
    let answer = "";
    let calls: ToolCall[] = [];
    const show = () =>
      setMessages([
        ...history,
        { role: "assistant", content: answer, ...(calls.length > 0 ? { tool_calls: calls } : {}) },
      ]);
    try {
      const request = requestOf(model, system, history, params, shape);
      for await (const delta of streamChat(clientOf(session), request, abort.current.signal)) {
        if (delta.kind === "text") {
          answer += delta.text;
          show();
        } else if (delta.kind === "tool_call") {
          calls = withToolCallDelta(calls, delta.call);
          show();
        } else if (delta.usage) {
          setUsageLine(
            `${delta.usage.prompt_tokens} prompt + ${delta.usage.completion_tokens} completion tokens · finish: ${delta.finishReason ?? "?"}`,
          );
        }
      }
    } catch (failure) {
      if (!abort.current.signal.aborted) setError(failure);
    } finally {
      setStreaming(false);
    }
  }

  const origin = window.location.origin;
  // The snippet shows the request that Send would make now (a greeting before anything is typed).
  const next: ChatMessage[] = draft
    ? [...messages, { role: "user", content: draft }]
    : messages.length > 0
      ? messages
      : [{ role: "user", content: "Hello!" }];
  const shown = requestOf(model, system, next, params, shape);

  return (
    <div class="playground">
      <div>
        <section class="panel transcript" aria-label="Conversation" aria-live="polite">
          {messages.length === 0 ? (
            <Empty>Send a message to start. Answers stream in as the model writes them.</Empty>
          ) : (
            messages.map((m, i) => (
              <div key={i} class={`message ${m.role}`} data-role={m.role}>
                <span class="role">{m.role}</span>
                {m.content}
                {(m.tool_calls ?? []).map((call, k) => (
                  <div key={k} class="tool-call" data-testid="tool-call">
                    <span class="role">call</span>
                    <code>{call.function.name}</code>
                    <pre>{call.function.arguments}</pre>
                  </div>
                ))}
              </div>
            ))
          )}
        </section>
        {usageLine && (
          <p class="hint" data-testid="chat-usage">
            {usageLine}
          </p>
        )}
        <ErrorNotice error={error} />
        {problem !== null && (
          <div class="notice error" role="alert">
            {problem}
          </div>
        )}
        <form class="panel" onSubmit={send}>
          <div class="field">
            <label for="chat-input">Message</label>
            <textarea
              id="chat-input"
              value={draft}
              onInput={(e) => setDraft(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e);
              }}
              aria-describedby="chat-input-hint"
            />
            <span id="chat-input-hint" class="hint">
              Ctrl+Enter sends.
            </span>
          </div>
          <div class="row">
            <button
              class="primary"
              type="submit"
              disabled={streaming || draft.trim() === "" || problem !== null}
            >
              {streaming ? "Streaming…" : "Send"}
            </button>
            {streaming && (
              <button type="button" onClick={() => abort.current?.abort()}>
                Stop
              </button>
            )}
            <button
              type="button"
              disabled={streaming || messages.length === 0}
              onClick={() => setMessages([])}
            >
              Clear
            </button>
          </div>
        </form>
        <section class="panel" aria-labelledby="snippet-heading">
          <h3 id="snippet-heading">The same request as code</h3>
          <div class="tabs" role="tablist" aria-label="Snippet language">
            {(Object.keys(snippetKinds) as SnippetKind[]).map((kind) => (
              <button
                key={kind}
                type="button"
                role="tab"
                aria-selected={snippet === kind}
                onClick={() => setSnippet(kind)}
              >
                {kind}
              </button>
            ))}
          </div>
          <pre role="tabpanel" aria-label={`${snippet} snippet`}>
            <code>{snippetKinds[snippet](origin, shown)}</code>
          </pre>
          <button
            type="button"
            onClick={() => navigator.clipboard?.writeText(snippetKinds[snippet](origin, shown))}
          >
            Copy
          </button>
        </section>
      </div>
      <aside class="panel" aria-label="Parameters">
        <div class="field">
          <label for="chat-model">Model</label>
          <select id="chat-model" value={model} onChange={(e) => setModel(e.currentTarget.value)}>
            {models.map((m) => (
              <option key={m.id} value={m.id}>
                {m.parent ? `${m.id} (adapter on ${m.parent})` : `${m.id} (base model)`}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="chat-system">System prompt</label>
          <textarea
            id="chat-system"
            value={system}
            onInput={(e) => setSystem(e.currentTarget.value)}
          />
        </div>
        <NumberField
          id="max-tokens"
          label="max_tokens"
          value={params.maxTokens}
          min={1}
          max={4096}
          step={1}
          onChange={(v) => setParams({ ...params, maxTokens: v })}
        />
        <NumberField
          id="temperature"
          label="temperature"
          value={params.temperature}
          min={0}
          max={2}
          step={0.1}
          onChange={(v) => setParams({ ...params, temperature: v })}
        />
        <NumberField
          id="top-p"
          label="top_p"
          value={params.topP}
          min={0}
          max={1}
          step={0.05}
          onChange={(v) => setParams({ ...params, topP: v })}
        />
        <div class="field">
          <label for="seed">seed (optional)</label>
          <input
            id="seed"
            inputMode="numeric"
            value={params.seed}
            onInput={(e) =>
              setParams({ ...params, seed: e.currentTarget.value.replace(/\D/g, "") })
            }
          />
        </div>
        <div class="field">
          <label for="stop">stop (one per line)</label>
          <textarea
            id="stop"
            value={params.stop}
            onInput={(e) => setParams({ ...params, stop: e.currentTarget.value })}
          />
        </div>
        <div class="field">
          <label for="json-schema">JSON schema of the answer (optional)</label>
          <textarea
            id="json-schema"
            value={shape.schema}
            placeholder={SCHEMA_EXAMPLE}
            onInput={(e) => setShape({ ...shape, schema: e.currentTarget.value })}
            aria-describedby="json-schema-hint"
          />
          <span id="json-schema-hint" class="hint">
            Sent as response_format json_schema: the answer always parses and follows it.
          </span>
        </div>
        <div class="field">
          <label for="tools">tools (optional, a JSON list)</label>
          <textarea
            id="tools"
            value={shape.tools}
            placeholder={TOOLS_EXAMPLE}
            onInput={(e) => setShape({ ...shape, tools: e.currentTarget.value })}
          />
        </div>
        <div class="field">
          <label for="tool-choice">tool_choice</label>
          <select
            id="tool-choice"
            value={shape.toolChoice}
            onChange={(e) =>
              setShape({ ...shape, toolChoice: e.currentTarget.value as Shape["toolChoice"] })
            }
          >
            <option value="auto">auto</option>
            <option value="required">required</option>
            <option value="none">none</option>
          </select>
        </div>
        <div class="field">
          <label>
            <input
              type="checkbox"
              checked={shape.parallel}
              onChange={(e) => setShape({ ...shape, parallel: e.currentTarget.checked })}
            />{" "}
            parallel_tool_calls
          </label>
        </div>
      </aside>
    </div>
  );
}

function NumberField(props: {
  id: string;
  label: string;
  value: number;
  min: number;
  max: number;
  step: number;
  onChange: (value: number) => void;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        type="number"
        value={props.value}
        min={props.min}
        max={props.max}
        step={props.step}
        onInput={(e) => {
          const value = e.currentTarget.valueAsNumber;
          if (Number.isFinite(value)) props.onChange(value);
        }}
      />
    </div>
  );
}
