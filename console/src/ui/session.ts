import { GatewayClient } from "../api/gateway-client.ts";
import type { Scope } from "../api/types.ts";

/**
 * Who is signed in. The secret lives in memory and in sessionStorage (this
 * tab only, gone when it closes); never in the URL, never in localStorage.
 */
export type Session =
  | { kind: "tenant"; token: string; scopes: Scope[]; tenantName: string; keyPrefix: string }
  | { kind: "admin"; token: string };

const storageKey = "lorafleet.session";

export function loadSession(): Session | null {
  const text = sessionStorage.getItem(storageKey);
  if (text === null) return null;
  try {
    const session = JSON.parse(text) as Session;
    // A tenant session saved by an older console lacks what GET /v1/me tells: sign in again.
    if (session.kind === "tenant" && typeof session.tenantName !== "string") throw new Error();
    return session;
  } catch {
    sessionStorage.removeItem(storageKey);
    return null;
  }
}

export function saveSession(session: Session | null): void {
  if (session === null) sessionStorage.removeItem(storageKey);
  else sessionStorage.setItem(storageKey, JSON.stringify(session));
}

/** The console talks to the gateway that serves it: same origin. */
export function clientOf(session: Session): GatewayClient {
  return new GatewayClient("", session.token);
}

export function can(session: Session, scope: Scope): boolean {
  return (
    session.kind === "tenant" &&
    (session.scopes.includes(scope) || session.scopes.includes("admin"))
  );
}
