/**
 * An error answer from the gateway, in OpenAI's shape
 * (`{"error": {"message", "type", "param", "code"}}`), or a network failure
 * (status 0, code `network_error`).
 */
export class GatewayError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | null;

  constructor(status: number, code: string, message: string, param: string | null = null) {
    super(message);
    this.name = "GatewayError";
    this.status = status;
    this.code = code;
    this.param = param;
  }

  /** Reads an error response body; a body that is not OpenAI's shape keeps its status. */
  static async fromResponse(response: Response): Promise<GatewayError> {
    const text = await response.text().catch(() => "");
    return GatewayError.fromBody(response.status, text);
  }

  static fromBody(status: number, text: string): GatewayError {
    try {
      const body = JSON.parse(text) as {
        error?: { message?: string; code?: string; param?: string | null };
      };
      if (body.error?.message) {
        return new GatewayError(
          status,
          body.error.code ?? `http_${status}`,
          body.error.message,
          body.error.param ?? null,
        );
      }
    } catch {
      // not JSON: fall through to the status line
    }
    return new GatewayError(status, `http_${status}`, `The gateway answered ${status}`);
  }
}
