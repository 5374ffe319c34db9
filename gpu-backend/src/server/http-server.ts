// The Node HTTP server around the Hono app (@hono/node-server's listener). Requests that
// never reach a route get OpenAI's error shape too, not a bare status: those Node's parser
// refuses (a malformed request line, header or chunk, headers too large, a request too
// slow) and those the listener cannot turn into a Request (a backslash in the path).
import { createServer, type Server, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import type { Hono } from "hono";
import { ApiError } from "./openai-error.ts";

/** The status Node would answer each parser error with (its defaults), else 400. */
const PARSER_STATUS: Record<string, 408 | 431> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
};

const badRequest = (why: string) =>
  new ApiError(400, `the HTTP request is malformed (${why})`, { code: "bad_http_request" });

/** An HTTP server for `app`, not yet listening; request URLs are built on `hostname`. */
export function createHttpServer(app: Hono, hostname: string): Server {
  const listener = getRequestListener(app.fetch, {
    hostname,
    // Only a request that could not be built reaches here: app errors are app.onError's.
    errorHandler: (error) => {
      const apiError = badRequest((error as Error).message);
      return Response.json(apiError.body, { status: apiError.status });
    },
  });
  const server = createServer(listener);
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // A reset connection, or one already answered, has nobody to tell.
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = PARSER_STATUS[error.code ?? ""] ?? 400;
    const apiError = badRequest(error.code ?? "unknown");
    const body = JSON.stringify(apiError.body);
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
