import { useState } from "preact/hooks";
import { listTenants, tenantUsage } from "../../api/admin-api.ts";
import { totalsBy, utcDays } from "../../api/daily-usage.ts";
import { groupedUsage } from "../../api/tenant-api.ts";
import type { LatencyPercentiles } from "../../api/types.ts";
import { usageCsv } from "../../api/usage-csv.ts";
import { type UsageReport, usageReport } from "../../api/usage-report.ts";
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

/** "12 ms"; no ok request, no latency: "–". */
function formatMs(ms: number | null): string {
  return ms === null ? "–" : `${ms.toLocaleString("en-US")} ms`;
}

function percentiles(latency: LatencyPercentiles): string {
  return [latency.p50, latency.p90, latency.p99].map(formatMs).join(" / ");
}

/**
 * Requests, tokens, errors and latency percentiles per day and per model (base
 * model or adapter), with CSV export. An operator picks the tenant.
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
  const report = useAsync(async (): Promise<UsageReport | null> => {
    if (session.kind === "tenant") {
      return usageReport((s, e, g) => groupedUsage(client, s, e, g), days, Date.now());
    }
    if (chosenTenant === "") return null;
    return usageReport((s, e, g) => tenantUsage(client, chosenTenant, s, e, g), days, Date.now());
  }, [session.token, days, chosenTenant]);

  const data = report.data?.daily ?? [];
  const perDay = utcDays(days, Date.now()).map((d) => {
    const t = totalsBy(
      data.filter((r) => r.day === d.day),
      () => d.day,
    )[0];
    return { day: d.day.slice(5), requests: t?.requests ?? 0, tokens: t?.tokens ?? 0 };
  });
  const perModel = report.data?.perModel ?? [];
  const totals = report.data?.totals ?? {
    requests: 0,
    total_tokens: 0,
    errors: 0,
    latency_ms: { p50: null, p90: null, p99: null },
  };

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
          <button type="button" onClick={report.reload}>
            Refresh
          </button>
        </div>
      </div>
      <ErrorNotice error={report.error ?? tenants.error} />
      {report.loading && report.data === null ? (
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
                {totals.total_tokens.toLocaleString("en-US")}
              </div>
            </div>
            <div class="stat">
              <div
                class="hint"
                title="Answered with HTTP ≥ 400, or a stream the backend ended with an error"
              >
                Errors
              </div>
              <div class="value" data-testid="total-errors">
                {totals.errors.toLocaleString("en-US")}
              </div>
            </div>
            <div class="stat">
              <div class="hint" title="Arrival to last byte, over successful requests">
                Latency p50 / p90 / p99
              </div>
              <div class="value" data-testid="total-latency">
                {percentiles(totals.latency_ms)}
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
                  bars={perModel.map((m) => ({ label: m.model ?? "", value: m.total_tokens }))}
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
                        <th scope="col" class="num">
                          p50
                        </th>
                        <th scope="col" class="num">
                          p90
                        </th>
                        <th scope="col" class="num">
                          p99
                        </th>
                      </tr>
                    </thead>
                    <tbody>
                      {perModel.map((m) => (
                        <tr key={m.model} data-model={m.model}>
                          <td>
                            <code>{m.model}</code>
                          </td>
                          <td class="num">{m.requests.toLocaleString("en-US")}</td>
                          <td class="num">{m.total_tokens.toLocaleString("en-US")}</td>
                          <td class="num">{m.errors.toLocaleString("en-US")}</td>
                          <td class="num">{formatMs(m.latency_ms.p50)}</td>
                          <td class="num">{formatMs(m.latency_ms.p90)}</td>
                          <td class="num">{formatMs(m.latency_ms.p99)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              </section>
            </>
          )}
          <p class="hint">
            Latency is the gateway's, from a request's arrival to its last byte (a stream's end),
            over successful requests; percentiles by nearest rank.
          </p>
        </>
      )}
    </>
  );
}
