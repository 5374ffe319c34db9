import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import type { ApiKey, IssuedKey, Scope } from "../../api/types.ts";
import { formatTime } from "../format.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { ShownOnce } from "../shown-once.tsx";
import { useAsync } from "../use-async.ts";

const allScopes: Scope[] = ["inference", "adapters:write", "admin"];

export type NewKey = { scopes: Scope[]; name?: string };

/**
 * The calls behind the page, for one tenant: the operator's /admin routes for a
 * chosen tenant, or a tenant key's own /v1/keys.
 */
export type KeyAccess = {
  list: () => Promise<ApiKey[]>;
  issue: (input: NewKey) => Promise<IssuedKey>;
  revoke: (keyId: string) => Promise<unknown>;
};

function KeyStatus({ apiKey, now }: { apiKey: ApiKey; now: number }) {
  if (apiKey.revoked_at !== null) return <span class="badge bad">revoked</span>;
  if (apiKey.expires_at !== null && apiKey.expires_at <= now)
    return <span class="badge warn">expired</span>;
  return <span class="badge ok">active</span>;
}

/**
 * One tenant's API keys: list (prefix, scopes, created, last used), issue (the
 * secret shown once), revoke. `picker` (the operator's tenant choice) goes at the
 * head of the form; `ownPrefix` marks the key signed in, since revoking it ends
 * the session.
 */
export function KeyManager({
  access,
  picker,
  ownPrefix,
}: {
  access: KeyAccess;
  picker?: ComponentChildren;
  ownPrefix?: string;
}) {
  const keys = useAsync(access.list, [access]);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<Scope[]>(["inference"]);
  const [issued, setIssued] = useState<IssuedKey | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const now = Date.now();

  async function create(event: Event) {
    event.preventDefault();
    setActionError(null);
    try {
      setIssued(await access.issue({ scopes, ...(name ? { name } : {}) }));
      setName("");
    } catch (error) {
      setActionError(error);
    }
    keys.reload();
  }

  async function revoke(key: ApiKey) {
    const warning = key.prefix === ownPrefix ? " It is the key you are signed in with." : "";
    if (
      !window.confirm(
        `Revoke ${key.prefix}…? Requests with it fail within 70 s everywhere.${warning}`,
      )
    )
      return;
    setActionError(null);
    try {
      await access.revoke(key.id);
    } catch (error) {
      setActionError(error);
    }
    keys.reload();
  }

  return (
    <>
      <ErrorNotice error={keys.error ?? actionError} />
      <form class="panel" onSubmit={create} aria-labelledby="new-key-heading">
        <h3 id="new-key-heading">Issue a key</h3>
        <div class="row">
          {picker}
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
            <button class="primary" type="submit" disabled={scopes.length === 0}>
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
                      {k.prefix === ownPrefix && <span class="badge">this key</span>}
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
