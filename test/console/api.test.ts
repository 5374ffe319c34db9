// The pure parts the console and the CLI share, checked without the network.
import { describe, expect, it } from "vitest";
import { multipartBody } from "../../cli/src/multipart-upload.ts";
import { type ToolCall, withToolCallDelta } from "../../console/src/api/chat.ts";
import { totalsBy, utcDays } from "../../console/src/api/daily-usage.ts";
import { GatewayError } from "../../console/src/api/gateway-error.ts";
import { curlSnippet, openaiPythonSnippet } from "../../console/src/api/snippets.ts";
import { sseData } from "../../console/src/api/sse.ts";
import type { GroupedUsage, UsageGroup } from "../../console/src/api/types.ts";
import { fileOfError, localFileProblem } from "../../console/src/api/upload-adapter.ts";
import { usageCsv } from "../../console/src/api/usage-csv.ts";
import { usageReport } from "../../console/src/api/usage-report.ts";

function streamOf(pieces: string[]): ReadableStream<Uint8Array> {
  const bytes = pieces.map((p) => new TextEncoder().encode(p));
  return new ReadableStream({
    pull(controller) {
      const next = bytes.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const data of sseData(stream)) out.push(data);
  return out;
}

describe("sseData", () => {
  it("yields each event's data however the bytes are split, CRLF and multi-line included", async () => {
    const text = 'data: {"a":1}\n\ndata: x\r\ndata: y\r\n\r\n: comment\n\ndata: [DONE]\n\n';
    const whole = await collect(streamOf([text]));
    expect(whole).toEqual(['{"a":1}', "x\ny", "[DONE]"]);
    for (let cut = 1; cut < text.length; cut += 3) {
      expect(await collect(streamOf([text.slice(0, cut), text.slice(cut)]))).toEqual(whole);
    }
  });

  it("keeps a multi-byte character split between chunks whole", async () => {
    const bytes = new TextEncoder().encode("data: é\n\n");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 7));
        controller.enqueue(bytes.subarray(7));
        controller.close();
      },
    });
    expect(await collect(stream)).toEqual(["é"]);
  });
});

describe("daily usage", () => {
  const now = Date.UTC(2026, 10, 26, 7, 30);

  it("reads a period in two grouped calls: daily rows per model, and per-model percentiles", async () => {
    const latency = { p50: 40, p90: 90, p99: 120 };
    const counts = {
      requests: 3,
      prompt_tokens: 10,
      completion_tokens: 5,
      total_tokens: 15,
      errors: 1,
      latency_ms: latency,
    };
    const asked: [number, number, UsageGroup[]][] = [];
    const report = await usageReport(
      async (start, end, groupBy): Promise<GroupedUsage> => {
        asked.push([start, end, groupBy]);
        const line = groupBy.includes("day")
          ? { day: "2026-11-25", model: "bot" }
          : { model: "bot" };
        return { ...counts, start, end, group_by: groupBy, data: [{ ...counts, ...line }] };
      },
      3,
      now,
    );
    const days = utcDays(3, now);
    expect(days.map((d) => d.day)).toEqual(["2026-11-24", "2026-11-25", "2026-11-26"]);
    const period = [days[0]?.start, days[2]?.end];
    expect(asked).toEqual([
      [...period, ["day", "model"]],
      [...period, ["model"]],
    ]);
    expect(report.daily).toEqual([
      {
        day: "2026-11-25",
        model: "bot",
        requests: 3,
        prompt_tokens: 10,
        completion_tokens: 5,
        errors: 1,
      },
    ]);
    expect(report.perModel[0]?.latency_ms).toEqual(latency);
    expect(totalsBy(report.daily, (r) => r.model)).toEqual([
      { key: "bot", requests: 3, tokens: 15, errors: 1 },
    ]);
  });

  it("exports RFC 4180 CSV, quoting what needs it", () => {
    const csv = usageCsv([
      {
        day: "2026-11-26",
        model: 'a,"b"',
        requests: 1,
        prompt_tokens: 2,
        completion_tokens: 3,
        errors: 0,
      },
    ]);
    expect(csv).toBe(
      'day,model,requests,prompt_tokens,completion_tokens,errors\r\n2026-11-26,"a,""b""",1,2,3,0\r\n',
    );
  });
});

describe("adapter upload checks", () => {
  it("names pickles and strangers before sending, and maps gateway codes to their file", () => {
    expect(localFileProblem("adapter_model.bin")).toContain("Pickle");
    expect(localFileProblem("notes.txt")).toContain("Not part of a PEFT adapter");
    expect(localFileProblem("adapter_config.json")).toBeNull();
    expect(fileOfError("rank_too_large")).toBe("adapter_config.json");
    expect(fileOfError("shape_mismatch")).toBe("adapter_model.safetensors");
    expect(fileOfError("adapter_exists")).toBeNull();
  });

  it("builds a multipart body the platform's own parser reads back, reporting progress", async () => {
    const weights = new Uint8Array(200_000).map((_, i) => i % 251);
    const form = multipartBody([
      { name: "name", value: "bot" },
      { name: "files", filename: "adapter_model.safetensors", bytes: weights },
    ]);
    const progress: number[] = [];
    const parsed = await new Response(
      form.stream((sent) => progress.push(sent)),
      {
        headers: { "content-type": form.contentType },
      },
    ).formData();
    expect(parsed.get("name")).toBe("bot");
    const file = parsed.get("files") as File;
    expect(file.name).toBe("adapter_model.safetensors");
    expect(new Uint8Array(await file.arrayBuffer())).toEqual(weights);
    expect(progress.at(-1)).toBe(form.total);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });
});

describe("streamed tool calls", () => {
  it("are assembled as OpenAI's SDKs do: id and name first, then argument pieces", () => {
    const pieces = [
      { index: 0, id: "call_a", function: { name: "get_weather", arguments: "" } },
      { index: 0, function: { arguments: '{"city": ' } },
      { index: 1, id: "call_b", function: { name: "get_time", arguments: "" } },
      { index: 0, function: { arguments: '"Paris"}' } },
      { index: 1, function: { arguments: "{}" } },
    ];
    const calls = pieces.reduce<ToolCall[]>(withToolCallDelta, []);
    expect(calls).toEqual([
      {
        id: "call_a",
        type: "function",
        function: { name: "get_weather", arguments: '{"city": "Paris"}' },
      },
      { id: "call_b", type: "function", function: { name: "get_time", arguments: "{}" } },
    ]);
  });
});

describe("snippets and errors", () => {
  const request = {
    model: "bot",
    messages: [{ role: "user" as const, content: "it's" }],
    max_tokens: 8,
    stream: true,
  };

  it("writes a curl line that survives the shell and never holds the key", () => {
    const curl = curlSnippet("http://gw", request);
    expect(curl).toContain("-N http://gw/v1/chat/completions");
    expect(curl).toContain("it'\\''s");
    expect(curl).toContain("$LORAFLEET_API_KEY");
    expect(openaiPythonSnippet("http://gw", request)).toContain(
      "    max_tokens=8,\n    stream=True,",
    );
  });

  it("reads OpenAI-shaped errors and keeps the status of anything else", () => {
    const shaped = GatewayError.fromBody(
      404,
      '{"error":{"message":"no","type":"x","param":null,"code":"model_not_found"}}',
    );
    expect([shaped.status, shaped.code, shaped.message]).toEqual([404, "model_not_found", "no"]);
    const other = GatewayError.fromBody(502, "<html>bad gateway</html>");
    expect([other.code, other.message]).toEqual(["http_502", "The gateway answered 502"]);
  });
});
