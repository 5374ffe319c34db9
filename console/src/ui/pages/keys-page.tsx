import { useState } from "preact/hooks";
import { issueKey, listKeys, listTenants, revokeKey } from "../../api/admin-api.ts";
import type { ApiKey, IssuedKey, Scope } from "../../api/types.ts";
import { formatTime } from "../format.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";

const allScopes: Scope[] = ["inference", "adapters:write", "admin"];

function KeyStatus({ apiKey, now }: { apiKey: ApiKey; now: number }) {
  if (apiKey.revoked_at !== null) return <span class="badge bad">revoked</span>;
  if (apiKey.expires_at !== null && apiKey.expires_at <= now)
    return <span class="badge warn">expired</span>;
  return <span class="badge ok">active</span>;
}

/** The new key's secret, shown this once, with a copy button. */
function ShownOnce({ issued, onDismiss }: { issued: IssuedKey; onDismiss: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="notice success" role="status">
      <p>
        <strong>Copy this key now.</strong> It is shown only once; the gateway keeps only its hash.
      </p>
      <div class="secret">
        <code data-testid="new-key">{issued.key}</code>
        <button
          type="button"
          onClick={async () => {
            await navigator.clipboard.writeText(issued.key);
            setCopied(true);
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        <button type="button" onClick={onDismiss}>
          Done
        </button>
      </div>
    </div>
  );
}

/**
 * A tenant's API keys: list (prefix, scopes, created, last used), issue (the
 * secret shown once), revoke. Keys are issued by the operator: the gateway's
 * key routes are under /admin.
 */
export function KeysPage({ session }: { session: Session }) {
  const client = clientOf(session);
  const tenants = useAsync(() => listTenants(client), [session.token]);
  const [tenantId, setTenantId] = useState("");
  const chosen = tenantId || tenants.data?.[0]?.id || "";
  const keys = useAsync(
    () => (chosen ? listKeys(client, chosen) : Promise.resolve([])),
    [session.token, chosen],
  );
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<Scope[]>(["inference"]);
  const [issued, setIssued] = useState<IssuedKey | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const now = Date.now();

  async function create(event: Event) {
    event.preventDefault();
    setActionError(null);
    try {
      setIssued(await issueKey(client, chosen, { scopes, ...(name ? { name } : {}) }));
      setName("");
    } catch (error) {
      setActionError(error);
    }
    keys.reload();
  }

  async function revoke(key: ApiKey) {
    if (!window.confirm(`Revoke ${key.prefix}…? Requests with it fail within 70 s everywhere.`))
      return;
    setActionError(null);
    try {
      await revokeKey(client, key.id);
    } catch (error) {
      setActionError(error);
    }
    keys.reload();
  }

  if (tenants.data?.length === 0) return <Empty>No tenants yet: create one under Tenants.</Empty>;
  return (
    <>
      <ErrorNotice error={tenants.error ?? keys.error ?? actionError} />
      <form class="panel" onSubmit={create} aria-labelledby="new-key-heading">
        <h3 id="new-key-heading">Issue a key</h3>
        <div class="row">
          <div class="field">
            <label for="key-tenant">Tenant</label>
            <select
              id="key-tenant"
              value={chosen}
              onChange={(e) => {
                setTenantId(e.currentTarget.value);
                setIssued(null);
              }}
            >
              {(tenants.data ?? []).map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="key-name">Name (optional)</label>
            <input id="key-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </div>
          <fieldset class="field">
            <legend class="label">Scopes</legend>
            {allScopes.map((scope) => (
              <label key={scope}>
                <input
                  type="checkbox"
                  checked={scopes.includes(scope)}
                  onChange={(e) =>
                    setScopes(
                      e.currentTarget.checked
                        ? [...scopes, scope]
                        : scopes.filter((s) => s !== scope),
                    )
                  }
                />{" "}
                {scope}{" "}
              </label>
            ))}
          </fieldset>
          <div class="field">
            <button class="primary" type="submit" disabled={!chosen || scopes.length === 0}>
              Create key
            </button>
          </div>
        </div>
        {issued && <ShownOnce issued={issued} onDismiss={() => setIssued(null)} />}
      </form>
      <section class="panel" aria-labelledby="keys-heading">
        <h3 id="keys-heading">Keys</h3>
        {keys.loading && keys.data === null ? (
          <Loading what="keys" />
        ) : keys.data?.length === 0 ? (
          <Empty>This tenant has no keys yet.</Empty>
        ) : (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Prefix</th>
                  <th scope="col">Name</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Status</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {(keys.data ?? []).map((k) => (
                  <tr key={k.id} data-key={k.id}>
                    <td>
                      <code>{k.prefix}…</code>
                    </td>
                    <td>{k.name ?? ""}</td>
                    <td>{k.scopes.join(", ")}</td>
                    <td>{formatTime(k.created_at)}</td>
                    <td>{formatTime(k.last_used_at)}</td>
                    <td>
                      <KeyStatus apiKey={k} now={now} />
                    </td>
                    <td>
                      {k.revoked_at === null && (
                        <button
                          type="button"
                          class="danger"
                          onClick={() => revoke(k)}
                          aria-label={`Revoke ${k.prefix}`}
                        >
                          Revoke
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}
