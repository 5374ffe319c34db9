import { GatewayError } from "./gateway-error.ts";

/**
 * HTTP to one gateway with one bearer token (a tenant API key or the admin
 * token). Every non-2xx answer becomes a GatewayError with the gateway's code.
 *
 * @example const models = await new GatewayClient("", key).json("GET", "/v1/models");
 */
export class GatewayClient {
  readonly baseUrl: string;
  readonly #token: string;

  /** `baseUrl` "" means the page's own origin (the console is served by the gateway). */
  constructor(baseUrl: string, token: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#token = token;
  }

  get authorization(): string {
    return `Bearer ${this.#token}`;
  }

  /** A request whose answer is checked; the Response is returned unread. */
  async send(method: string, path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", this.authorization);
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { ...init, method, headers });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new GatewayError(0, "network_error", `Could not reach the gateway: ${String(error)}`);
    }
    if (!response.ok) throw await GatewayError.fromResponse(response);
    return response;
  }

  /** A JSON request (body serialised when given) and its JSON answer. */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init: RequestInit =
      body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { "content-type": "application/json" } };
    const response = await this.send(method, path, init);
    return (await response.json()) as T;
  }
}
