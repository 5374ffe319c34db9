import { useMemo, useState } from "preact/hooks";
import { issueKey, listKeys, listTenants, revokeKey } from "../../api/admin-api.ts";
import { issueOwnKey, listOwnKeys, revokeOwnKey } from "../../api/tenant-api.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";
import { type KeyAccess, KeyManager } from "./key-manager.tsx";

type TenantSession = Extract<Session, { kind: "tenant" }>;
type AdminSession = Extract<Session, { kind: "admin" }>;

/** A tenant key with the `admin` scope manages its own tenant's keys through /v1/keys. */
function OwnKeysPage({ session }: { session: TenantSession }) {
  const access = useMemo<KeyAccess>(() => {
    const client = clientOf(session);
    return {
      list: () => listOwnKeys(client),
      issue: (input) => issueOwnKey(client, input),
      revoke: (keyId) => revokeOwnKey(client, keyId),
    };
  }, [session.token]);
  return <KeyManager access={access} ownPrefix={session.keyPrefix} />;
}

/** The operator picks a tenant and manages its keys through /admin. */
function OperatorKeysPage({ session }: { session: AdminSession }) {
  const client = useMemo(() => clientOf(session), [session.token]);
  const tenants = useAsync(() => listTenants(client), [client]);
  const [tenantId, setTenantId] = useState("");
  const chosen = tenantId || tenants.data?.[0]?.id || "";
  const access = useMemo<KeyAccess>(
    () => ({
      list: () => (chosen ? listKeys(client, chosen) : Promise.resolve([])),
      issue: (input) => issueKey(client, chosen, input),
      revoke: (keyId) => revokeKey(client, keyId),
    }),
    [client, chosen],
  );

  if (tenants.data?.length === 0) return <Empty>No tenants yet: create one under Tenants.</Empty>;
  if (tenants.error) return <ErrorNotice error={tenants.error} />;
  if (!chosen) return <Loading what="tenants" />;
  const picker = (
    <div class="field">
      <label for="key-tenant">Tenant</label>
      <select id="key-tenant" value={chosen} onChange={(e) => setTenantId(e.currentTarget.value)}>
        {(tenants.data ?? []).map((t) => (
          <option key={t.id} value={t.id}>
            {t.name}
          </option>
        ))}
      </select>
    </div>
  );
  // Keyed by tenant so a secret shown for one tenant is gone when another is chosen.
  return <KeyManager key={chosen} access={access} picker={picker} />;
}

/** API keys: the operator's view of any tenant, or a tenant admin key's view of its own. */
export function KeysPage({ session }: { session: Session }) {
  return session.kind === "admin" ? (
    <OperatorKeysPage session={session} />
  ) : (
    <OwnKeysPage session={session} />
  );
}
