import { listBackends } from "../../api/admin-api.ts";
import { formatTime } from "../format.ts";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";

/** Registered GPU backends with the health and load of the last check (cron, every minute). */
export function BackendsPage({ session }: { session: Session }) {
  const backends = useAsync(() => listBackends(clientOf(session)), [session.token]);
  return (
    <section class="panel" aria-labelledby="backends-heading">
      <div class="row">
        <h3 id="backends-heading">Backends</h3>
        <button type="button" onClick={backends.reload}>
          Refresh
        </button>
      </div>
      <ErrorNotice error={backends.error} />
      {backends.loading && backends.data === null ? (
        <Loading what="backends" />
      ) : backends.data?.length === 0 ? (
        <Empty>
          No backends registered. Register one with <code>POST /admin/backends</code>.
        </Empty>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Id</th>
                <th scope="col">URL</th>
                <th scope="col">Base model</th>
                <th scope="col">Status</th>
                <th scope="col">Health</th>
                <th scope="col" class="num">
                  Load / capacity
                </th>
                <th scope="col">Last checked</th>
              </tr>
            </thead>
            <tbody>
              {(backends.data ?? []).map((b) => (
                <tr key={b.id} data-backend={b.id}>
                  <td>
                    <code>{b.id}</code>
                  </td>
                  <td>{b.url}</td>
                  <td>{b.base_model}</td>
                  <td>
                    <span class={`badge ${b.status === "active" ? "ok" : "warn"}`}>{b.status}</span>
                  </td>
                  <td>
                    <span
                      class={`badge ${b.healthy ? "ok" : "bad"}`}
                      title={b.last_error ?? undefined}
                    >
                      {b.healthy ? "healthy" : "unhealthy"}
                    </span>
                    {b.last_error && <span class="file-error">{b.last_error}</span>}
                  </td>
                  <td class="num">
                    {b.load} / {b.capacity}
                  </td>
                  <td>{formatTime(b.last_checked_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
