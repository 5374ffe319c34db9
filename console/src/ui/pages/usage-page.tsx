import { useState } from "preact/hooks";
import { listTenants, tenantUsage } from "../../api/admin-api.ts";
import { dailyUsage, totalsBy, utcDays } from "../../api/daily-usage.ts";
import { usage } from "../../api/tenant-api.ts";
import { usageCsv } from "../../api/usage-csv.ts";
import { BarChart } from "../bar-chart.tsx";
import { Empty, ErrorNotice, Loading } from "../notice.tsx";
import { clientOf, type Session } from "../session.ts";
import { useAsync } from "../use-async.ts";

const ranges = [7, 14, 30];

function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.click();
  URL.revokeObjectURL(url);
}

/**
 * Requests, tokens and errors per day and per model (base model or adapter),
 * with CSV export. An operator picks the tenant.
 */
export function UsagePage({ session }: { session: Session }) {
  const client = clientOf(session);
  const [days, setDays] = useState(14);
  const [tenantId, setTenantId] = useState("");
  const tenants = useAsync(
    () => (session.kind === "admin" ? listTenants(client) : Promise.resolve([])),
    [session.token],
  );
  const chosenTenant = tenantId || tenants.data?.[0]?.id || "";
  const rows = useAsync(async () => {
    if (session.kind === "tenant") {
      return dailyUsage((s, e) => usage(client, s, e), days, Date.now());
    }
    if (chosenTenant === "") return [];
    return dailyUsage((s, e) => tenantUsage(client, chosenTenant, s, e), days, Date.now());
  }, [session.token, days, chosenTenant]);

  const data = rows.data ?? [];
  const perDay = utcDays(days, Date.now()).map((d) => {
    const t = totalsBy(
      data.filter((r) => r.day === d.day),
      () => d.day,
    )[0];
    return { day: d.day.slice(5), requests: t?.requests ?? 0, tokens: t?.tokens ?? 0 };
  });
  const perModel = totalsBy(data, (r) => r.model);
  const totals = totalsBy(data, () => "all")[0] ?? { requests: 0, tokens: 0, errors: 0 };

  return (
    <>
      <div class="row panel">
        {session.kind === "admin" && (
          <div class="field">
            <label for="usage-tenant">Tenant</label>
            <select
              id="usage-tenant"
              value={chosenTenant}
              onChange={(e) => setTenantId(e.currentTarget.value)}
            >
              {(tenants.data ?? []).map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name}
                </option>
              ))}
            </select>
          </div>
        )}
        <div class="field">
          <label for="usage-range">Period</label>
          <select
            id="usage-range"
            value={days}
            onChange={(e) => setDays(Number(e.currentTarget.value))}
          >
            {ranges.map((r) => (
              <option key={r} value={r}>
                Last {r} days (UTC)
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <button
            type="button"
            disabled={data.length === 0}
            onClick={() => download(`lorafleet-usage-${days}d.csv`, usageCsv(data))}
          >
            Export CSV
          </button>
        </div>
        <div class="field">
          <button type="button" onClick={rows.reload}>
            Refresh
          </button>
        </div>
      </div>
      <ErrorNotice error={rows.error ?? tenants.error} />
      {rows.loading && rows.data === null ? (
        <Loading what="usage" />
      ) : (
        <>
          <section class="stats" aria-label="Totals for the period">
            <div class="stat">
              <div class="hint">Requests</div>
              <div class="value" data-testid="total-requests">
                {totals.requests.toLocaleString("en-US")}
              </div>
            </div>
            <div class="stat">
              <div class="hint">Tokens</div>
              <div class="value" data-testid="total-tokens">
                {totals.tokens.toLocaleString("en-US")}
              </div>
            </div>
            <div class="stat">
              <div class="hint">Errors (HTTP ≥ 400)</div>
              <div class="value" data-testid="total-errors">
                {totals.errors.toLocaleString("en-US")}
              </div>
            </div>
          </section>
          {data.length === 0 ? (
            <Empty>No requests in this period yet. Try the playground to make one.</Empty>
          ) : (
            <>
              <div class="charts">
                <BarChart
                  title="Requests per day"
                  unit="requests"
                  bars={perDay.map((d) => ({ label: d.day, value: d.requests }))}
                />
                <BarChart
                  title="Tokens per day"
                  unit="tokens"
                  bars={perDay.map((d) => ({ label: d.day, value: d.tokens }))}
                />
                <BarChart
                  title="Tokens per model"
                  unit="tokens"
                  bars={perModel.map((m) => ({ label: m.key, value: m.tokens }))}
                />
              </div>
              <section class="panel" aria-labelledby="per-model-heading">
                <h3 id="per-model-heading">Per model and adapter</h3>
                <div class="table-wrap">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Model</th>
                        <th scope="col" class="num">
                          Requests
                        </th>
                        <th scope="col" class="num">
                          Tokens
                        </th>
                        <th scope="col" class="num">
                          Errors
                        </th>
                      </tr>
                    </thead>
                    <tbody>
                      {perModel.map((m) => (
                        <tr key={m.key} data-model={m.key}>
                          <td>
                            <code>{m.key}</code>
                          </td>
                          <td class="num">{m.requests.toLocaleString("en-US")}</td>
                          <td class="num">{m.tokens.toLocaleString("en-US")}</td>
                          <td class="num">{m.errors.toLocaleString("en-US")}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              </section>
            </>
          )}
          <p class="hint">
            Latency percentiles are not shown: the gateway records each request's latency but its
            usage API does not report it yet.
          </p>
        </>
      )}
    </>
  );
}
