import { useState } from "preact/hooks";
import { deleteAdapter, listAdapters } from "../../api/tenant-api.ts";
import type { Adapter } from "../../api/types.ts";
import { formatBytes, formatTime } from "../format.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { can, clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";
import { AdapterUpload } from "./adapter-upload.tsx";

function StatusBadge({ adapter }: { adapter: Adapter }) {
  const tone = adapter.status === "ready" ? "ok" : adapter.status === "failed" ? "bad" : "warn";
  return (
    <span class={`badge ${tone}`} title={adapter.failure_reason ?? undefined}>
      {adapter.status}
    </span>
  );
}

/** The tenant's adapters: list, upload (with `adapters:write`), delete. */
export function AdaptersPage({ session }: { session: Session }) {
  const client = clientOf(session);
  const adapters = useAsync(() => listAdapters(client), [session.token]);
  const [actionError, setActionError] = useState<unknown>(null);
  const writable = can(session, "adapters:write");

  async function remove(adapter: Adapter) {
    if (!window.confirm(`Delete the adapter ${adapter.name}? Requests naming it will fail.`))
      return;
    setActionError(null);
    try {
      await deleteAdapter(client, adapter.name);
    } catch (error) {
      setActionError(error);
    }
    adapters.reload();
  }

  return (
    <>
      {writable ? (
        <AdapterUpload session={session} onUploaded={adapters.reload} />
      ) : (
        <p class="notice info">
          This key lacks the <code>adapters:write</code> scope: it can list adapters but not upload
          or delete them.
        </p>
      )}
      <section class="panel" aria-labelledby="adapters-heading">
        <h3 id="adapters-heading">Your adapters</h3>
        <ErrorNotice error={adapters.error ?? actionError} />
        {adapters.loading && adapters.data === null ? (
          <Loading what="adapters" />
        ) : adapters.data?.length === 0 ? (
          <Empty>No adapters yet. Upload a PEFT LoRA adapter above to serve it.</Empty>
        ) : adapters.data ? (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Base model</th>
                  <th scope="col" class="num">
                    Rank
                  </th>
                  <th scope="col">Target modules</th>
                  <th scope="col" class="num">
                    Size
                  </th>
                  <th scope="col">Status</th>
                  <th scope="col">Uploaded</th>
                  {writable && <th scope="col">Actions</th>}
                </tr>
              </thead>
              <tbody>
                {adapters.data.map((a) => (
                  <tr key={a.id} data-adapter={a.name}>
                    <td>
                      <code>{a.name}</code>
                    </td>
                    <td>{a.base_model}</td>
                    <td class="num">{a.rank}</td>
                    <td>{a.target_modules.join(", ")}</td>
                    <td class="num">{formatBytes(a.bytes)}</td>
                    <td>
                      <StatusBadge adapter={a} />
                    </td>
                    <td>{formatTime(a.created_at)}</td>
                    {writable && (
                      <td>
                        <button
                          type="button"
                          class="danger"
                          onClick={() => remove(a)}
                          aria-label={`Delete ${a.name}`}
                        >
                          Delete
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </section>
    </>
  );
}
