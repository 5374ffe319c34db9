import type { ChatRequest } from "./chat.ts";

// Code that sends the same request as the playground. The key is left as an
// environment variable so a snippet can be shared (or screenshotted) safely.

/** @example curlSnippet("https://gw.example", { model: "bot", messages: [...] }) */
export function curlSnippet(origin: string, request: ChatRequest): string {
  const body = JSON.stringify(request, null, 2).replaceAll("'", "'\\''");
  return [
    `curl ${request.stream ? "-N " : ""}${origin}/v1/chat/completions \\`,
    `  -H "authorization: Bearer $LORAFLEET_API_KEY" \\`,
    `  -H "content-type: application/json" \\`,
    `  -d '${body}'`,
  ].join("\n");
}

/** The official `openai` npm client pointed at the gateway. */
export function openaiJsSnippet(origin: string, request: ChatRequest): string {
  const args = JSON.stringify(request, null, 2).replace(/\n/g, "\n  ");
  const lines = [
    `import OpenAI from "openai";`,
    "",
    `const client = new OpenAI({ baseURL: "${origin}/v1", apiKey: process.env.LORAFLEET_API_KEY });`,
    `const answer = await client.chat.completions.create(${args.replace(/\n {2}/g, "\n")});`,
  ];
  if (request.stream) {
    lines.push(`for await (const chunk of answer) {`);
    lines.push(`  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");`);
    lines.push("}");
  } else {
    lines.push("console.log(answer.choices[0].message.content);");
  }
  return lines.join("\n");
}

/** The official `openai` Python client pointed at the gateway. */
export function openaiPythonSnippet(origin: string, request: ChatRequest): string {
  const { model, messages, stream, ...params } = request;
  const kwargs = [
    `    model=${JSON.stringify(model)},`,
    `    messages=${JSON.stringify(messages)},`,
    ...Object.entries(params).map(([name, value]) => `    ${name}=${JSON.stringify(value)},`),
    ...(stream ? ["    stream=True,"] : []),
  ];
  const lines = [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${origin}/v1", api_key=os.environ["LORAFLEET_API_KEY"])`,
    "answer = client.chat.completions.create(",
    ...kwargs,
    ")",
  ];
  if (stream) {
    lines.push("for chunk in answer:");
    lines.push('    print(chunk.choices[0].delta.content or "", end="", flush=True)');
  } else {
    lines.push("print(answer.choices[0].message.content)");
  }
  return lines.join("\n");
}
