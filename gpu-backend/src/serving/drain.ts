// Graceful shutdown's first half (SIGTERM): from the moment it starts, admission refuses
// new requests with a retriable 503 and /ready and /health answer 503, so the gateway
// routes around this backend, while the unfinished requests run on.

/** How often a drain looks whether the unfinished requests are done. */
const POLL_MS = 50;

export class Drain {
  #draining = false;

  /** true once start() was called */
  get draining(): boolean {
    return this.#draining;
  }

  /** Resolves once `unfinished()` is 0 or `timeoutMs` has passed; stop the loop after it. */
  async start(unfinished: () => number, timeoutMs: number): Promise<void> {
    this.#draining = true;
    const deadline = Date.now() + timeoutMs;
    while (unfinished() > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
