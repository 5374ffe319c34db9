import { useState } from "preact/hooks";
import { listTenants } from "../api/admin-api.ts";
import { GatewayClient } from "../api/gateway-client.ts";
import { whoAmI } from "../api/tenant-api.ts";
import { ErrorNotice } from "./notice.tsx";
import type { Session } from "./session.ts";

/** Sign in with a tenant API key (`lf_live_...`) or the operator's admin token. */
export function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [kind, setKind] = useState<"tenant" | "admin">("tenant");
  const [token, setToken] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const secret = token.trim();
    const client = new GatewayClient("", secret);
    try {
      if (kind === "admin") {
        await listTenants(client);
        onSignedIn({ kind: "admin", token: secret });
      } else {
        const me = await whoAmI(client);
        onSignedIn({
          kind: "tenant",
          token: secret,
          scopes: me.key.scopes,
          tenantName: me.tenant.name,
          keyPrefix: me.key.prefix,
        });
      }
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="sign-in">
      <h1>lorafleet console</h1>
      <form class="panel" onSubmit={submit} aria-describedby="sign-in-hint">
        <fieldset>
          <legend>Sign in as</legend>
          <label>
            <input
              type="radio"
              name="kind"
              checked={kind === "tenant"}
              onChange={() => setKind("tenant")}
            />{" "}
            Tenant (API key)
          </label>{" "}
          <label>
            <input
              type="radio"
              name="kind"
              checked={kind === "admin"}
              onChange={() => setKind("admin")}
            />{" "}
            Operator (admin token)
          </label>
        </fieldset>
        <div class="field">
          <label for="token">{kind === "admin" ? "Admin token" : "API key"}</label>
          <input
            id="token"
            type="password"
            autocomplete="off"
            required
            value={token}
            onInput={(e) => setToken(e.currentTarget.value)}
            placeholder={kind === "admin" ? "" : "lf_live_..."}
          />
        </div>
        <p id="sign-in-hint" class="hint">
          Kept only in this tab's memory and session storage; signing out or closing the tab forgets
          it.
        </p>
        <ErrorNotice error={error} />
        <button class="primary" type="submit" disabled={busy || token.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
