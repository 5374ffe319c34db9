/**
 * Server-sent events from a fetch body: yields each event's `data` (lines joined
 * by "\n"), per the WHATWG event-stream rules that matter for OpenAI streams
 * (CR/LF/CRLF line ends, comments, multi-line data, events cut across chunks).
 *
 *   for await (const data of sseData(response.body)) if (data === "[DONE]") break;
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let lineEnd = buffer.search(/\r\n|\r|\n/);
    while (lineEnd !== -1) {
      // A lone "\r" at the buffer's end may be half of "\r\n": wait for more.
      if (buffer[lineEnd] === "\r" && lineEnd === buffer.length - 1) break;
      const line = buffer.slice(0, lineEnd);
      buffer = buffer.slice(lineEnd + (buffer.startsWith("\r\n", lineEnd) ? 2 : 1));
      if (line === "") {
        if (data.length > 0) yield data.join("\n");
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(dataField(line));
      }
      lineEnd = buffer.search(/\r\n|\r|\n/);
    }
  }
  // A stream may end without the final blank line (or line end): keep what it said.
  const tail = buffer.replace(/\r$/, "");
  if (tail.startsWith("data:")) data.push(dataField(tail));
  if (data.length > 0) yield data.join("\n");
}

/** "data: x" and "data:x" both carry "x" (one leading space is dropped). */
function dataField(line: string): string {
  return line.slice(line.startsWith("data: ") ? 6 : 5);
}
