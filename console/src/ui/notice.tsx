import type { ComponentChildren } from "preact";
import { GatewayError } from "../api/gateway-error.ts";

/** An error as a person should read it: the gateway's message and code. */
export function ErrorNotice({ error }: { error: unknown }) {
  if (error === null || error === undefined) return null;
  const text =
    error instanceof GatewayError
      ? `${error.message} (${error.code}${error.status ? `, HTTP ${error.status}` : ""})`
      : String(error);
  return (
    <div class="notice error" role="alert">
      {text}
    </div>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="empty" aria-live="polite">
      Loading {what}…
    </p>
  );
}
