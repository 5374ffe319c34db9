import { useState } from "preact/hooks";
import {
  createTenant,
  listTenants,
  setTenantSuspended,
  updateTenant,
} from "../../api/admin-api.ts";
import type { Tenant, TenantLimits } from "../../api/types.ts";
import { formatBytes, formatNumber } from "../format.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";

/** Limits a blank field sets to unlimited (null); the rest must be numbers. */
const nullableLimits = [
  "requests_per_minute",
  "tokens_per_minute",
  "concurrent_streams",
  "monthly_token_quota",
] as const;
const quotaLimits = ["max_adapters", "max_adapter_bytes", "max_rank"] as const;

function LimitsForm({
  tenant,
  onSave,
}: {
  tenant: Tenant;
  onSave: (limits: Partial<TenantLimits>) => Promise<void>;
}) {
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(
      [...nullableLimits, ...quotaLimits].map((k) => [
        k,
        tenant[k] === null ? "" : String(tenant[k]),
      ]),
    ),
  );
  const [problem, setProblem] = useState<string | null>(null);

  async function submit(event: Event) {
    event.preventDefault();
    const limits: Record<string, number | null> = {};
    for (const k of nullableLimits) limits[k] = values[k]?.trim() ? Number(values[k]) : null;
    for (const k of quotaLimits) limits[k] = Number(values[k]);
    const bad = Object.entries(limits).find(([, v]) => v !== null && !Number.isSafeInteger(v));
    if (bad) {
      setProblem(`${bad[0]} must be a whole number`);
      return;
    }
    setProblem(null);
    await onSave(limits as Partial<TenantLimits>);
  }

  return (
    <form onSubmit={submit} aria-label={`Limits of ${tenant.name}`}>
      <div class="row">
        {[...nullableLimits, ...quotaLimits].map((k) => (
          <div class="field" key={k}>
            <label for={`${tenant.id}-${k}`}>{k}</label>
            <input
              id={`${tenant.id}-${k}`}
              inputMode="numeric"
              value={values[k]}
              placeholder={(nullableLimits as readonly string[]).includes(k) ? "unlimited" : ""}
              onInput={(e) => setValues({ ...values, [k]: e.currentTarget.value })}
            />
          </div>
        ))}
      </div>
      {problem && (
        <p class="file-error" role="alert">
          {problem}
        </p>
      )}
      <button class="primary" type="submit">
        Save limits
      </button>
    </form>
  );
}

/** Tenants: create, list with their limits, edit limits, suspend and resume. */
export function TenantsPage({ session }: { session: Session }) {
  const client = clientOf(session);
  const tenants = useAsync(() => listTenants(client), [session.token]);
  const [newName, setNewName] = useState("");
  const [editing, setEditing] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);

  async function act(action: () => Promise<unknown>) {
    setActionError(null);
    try {
      await action();
    } catch (error) {
      setActionError(error);
    }
    tenants.reload();
  }

  return (
    <>
      <form
        class="panel row"
        onSubmit={(e) => {
          e.preventDefault();
          act(() => createTenant(client, { name: newName })).then(() => setNewName(""));
        }}
      >
        <div class="field">
          <label for="tenant-name">New tenant</label>
          <input
            id="tenant-name"
            value={newName}
            pattern="[a-z0-9][a-z0-9-]{1,62}"
            aria-describedby="tenant-name-hint"
            onInput={(e) => setNewName(e.currentTarget.value)}
          />
          <span id="tenant-name-hint" class="hint">
            2-63 lowercase letters, digits or dashes
          </span>
        </div>
        <div class="field">
          <button class="primary" type="submit" disabled={newName === ""}>
            Create tenant
          </button>
        </div>
      </form>
      <ErrorNotice error={tenants.error ?? actionError} />
      {tenants.loading && tenants.data === null ? (
        <Loading what="tenants" />
      ) : tenants.data?.length === 0 ? (
        <Empty>No tenants yet.</Empty>
      ) : (
        <section class="panel table-wrap" aria-label="Tenants">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">
                  Req/min
                </th>
                <th scope="col" class="num">
                  Tokens/min
                </th>
                <th scope="col" class="num">
                  Streams
                </th>
                <th scope="col" class="num">
                  Monthly tokens
                </th>
                <th scope="col">Adapters</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {(tenants.data ?? []).map((t) => [
                <tr key={t.id} data-tenant={t.name}>
                  <td>
                    <strong>{t.name}</strong>
                    <br />
                    <code class="hint">{t.id}</code>
                  </td>
                  <td>
                    <span class={`badge ${t.status === "active" ? "ok" : "bad"}`}>{t.status}</span>
                  </td>
                  <td class="num">{formatNumber(t.requests_per_minute)}</td>
                  <td class="num">{formatNumber(t.tokens_per_minute)}</td>
                  <td class="num">{formatNumber(t.concurrent_streams)}</td>
                  <td class="num">{formatNumber(t.monthly_token_quota)}</td>
                  <td>
                    ≤ {t.max_adapters}, rank ≤ {t.max_rank}, ≤ {formatBytes(t.max_adapter_bytes)}
                  </td>
                  <td>
                    <button
                      type="button"
                      aria-expanded={editing === t.id}
                      onClick={() => setEditing(editing === t.id ? null : t.id)}
                    >
                      Limits
                    </button>{" "}
                    <button
                      type="button"
                      class={t.status === "active" ? "danger" : ""}
                      onClick={() =>
                        act(() => setTenantSuspended(client, t.id, t.status === "active"))
                      }
                    >
                      {t.status === "active" ? "Suspend" : "Resume"}
                    </button>
                  </td>
                </tr>,
                editing === t.id && (
                  <tr key={`${t.id}-limits`}>
                    <td colSpan={8}>
                      <LimitsForm
                        tenant={t}
                        onSave={(limits) =>
                          act(() => updateTenant(client, t.id, limits)).then(() => setEditing(null))
                        }
                      />
                    </td>
                  </tr>
                ),
              ])}
            </tbody>
          </table>
        </section>
      )}
    </>
  );
}
