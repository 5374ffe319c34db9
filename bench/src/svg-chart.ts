/**
 * Two small chart kinds written as SVG by hand (no plotting dependency): a line chart
 * with linear or log-10 x axis, and a grouped bar chart. Enough for the README's
 * figures; every number drawn is also in the result JSON.
 *
 *   lineChart({ title: "t", xLabel: "adapters", yLabel: "tok/s", xLog: true,
 *               series: [{ name: "slora", points: [[1, 900], [100, 850]] }] });
 */
export interface Series {
  name: string;
  points: [number, number][];
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  series: Series[];
}

export interface BarChartSpec {
  title: string;
  yLabel: string;
  /** groups along x; each has one value per bar name (null: no bar) */
  groups: { label: string; values: Record<string, number | null> }[];
}

const WIDTH = 640;
const HEIGHT = 400;
const MARGIN = { left: 72, right: 150, top: 40, bottom: 56 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks: number[] = [];
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  for (let k = first; k <= last; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

function formatTick(value: number): string {
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3))
    return value.toExponential(0);
  return String(Number(value.toPrecision(6)));
}

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  const x0 = MARGIN.left;
  const y0 = MARGIN.top + PLOT_H;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
    `<text x="${x0 + PLOT_W / 2}" y="${HEIGHT - 14}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text transform="translate(18 ${MARGIN.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
    `<path d="M${x0} ${MARGIN.top}V${y0}H${x0 + PLOT_W}" fill="none" stroke="black"/>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

function yAxis(max: number): { scale: (y: number) => number; marks: string[] } {
  const ticks = niceTicks(0, max > 0 ? max : 1);
  const top = ticks.at(-1) as number;
  const scale = (y: number) => MARGIN.top + PLOT_H - (y / top) * PLOT_H;
  const marks = ticks.map(
    (t) =>
      `<path d="M${MARGIN.left - 4} ${scale(t)}H${MARGIN.left + PLOT_W}" stroke="#ddd"/>` +
      `<text x="${MARGIN.left - 7}" y="${scale(t) + 4}" text-anchor="end">${formatTick(t)}</text>`,
  );
  return { scale, marks };
}

function legend(names: string[]): string[] {
  return names.map((name, i) => {
    const y = MARGIN.top + 10 + i * 20;
    const x = MARGIN.left + PLOT_W + 16;
    return `<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${x + 20}" y="${y}">${escapeXml(name)}</text>`;
  });
}

export function lineChart(spec: LineChartSpec): string {
  const all = spec.series.flatMap((s) => s.points);
  const xs = all.map(([x]) => (spec.xLog ? Math.log10(x) : x));
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length ? Math.max(...xs) : 1;
  const ticks = spec.xLog
    ? Array.from({ length: Math.floor(xMax) - Math.ceil(xMin) + 1 }, (_, i) => Math.ceil(xMin) + i)
    : niceTicks(xMin, xMax);
  const lo = Math.min(xMin, ticks[0] ?? xMin);
  const hi = Math.max(xMax, ticks.at(-1) ?? xMax, lo + 1e-9);
  const scaleX = (x: number) =>
    MARGIN.left + (((spec.xLog ? Math.log10(x) : x) - lo) / (hi - lo || 1)) * PLOT_W;
  const { scale: scaleY, marks } = yAxis(Math.max(0, ...all.map(([, y]) => y)));
  const xMarks = ticks.map((t) => {
    const value = spec.xLog ? 10 ** t : t;
    const x = scaleX(value);
    return `<path d="M${x} ${MARGIN.top + PLOT_H}v4" stroke="black"/><text x="${x}" y="${MARGIN.top + PLOT_H + 18}" text-anchor="middle">${formatTick(value)}</text>`;
  });
  const lines = spec.series.map((s, i) => {
    const color = COLORS[i % COLORS.length];
    const sorted = [...s.points].sort((a, b) => a[0] - b[0]);
    const d = sorted.map(
      ([x, y], j) => `${j === 0 ? "M" : "L"}${scaleX(x).toFixed(1)} ${scaleY(y).toFixed(1)}`,
    );
    const dots = sorted.map(
      ([x, y]) =>
        `<circle cx="${scaleX(x).toFixed(1)}" cy="${scaleY(y).toFixed(1)}" r="3" fill="${color}"/>`,
    );
    return `<path d="${d.join("")}" fill="none" stroke="${color}" stroke-width="2"/>${dots.join("")}`;
  });
  return frame(spec.title, spec.xLabel, spec.yLabel, [
    ...marks,
    ...xMarks,
    ...lines,
    ...legend(spec.series.map((s) => s.name)),
  ]);
}

export function barChart(spec: BarChartSpec): string {
  const names = [...new Set(spec.groups.flatMap((g) => Object.keys(g.values)))];
  const values = spec.groups.flatMap((g) => Object.values(g.values).filter((v) => v !== null));
  const { scale: scaleY, marks } = yAxis(Math.max(0, ...(values as number[])));
  const groupW = PLOT_W / Math.max(1, spec.groups.length);
  const barW = (groupW * 0.8) / Math.max(1, names.length);
  const bars = spec.groups.flatMap((group, g) => {
    const x0 = MARGIN.left + g * groupW + groupW * 0.1;
    const label = `<text x="${x0 + groupW * 0.4}" y="${MARGIN.top + PLOT_H + 18}" text-anchor="middle">${escapeXml(group.label)}</text>`;
    const rects = names.map((name, i) => {
      const value = group.values[name];
      if (value === null || value === undefined) return "";
      const y = scaleY(value);
      const center = (x0 + i * barW + (barW - 2) / 2).toFixed(1);
      const text = `<text x="${center}" y="${(y - 3).toFixed(1)}" text-anchor="middle" font-size="10">${formatTick(Number(value.toPrecision(3)))}</text>`;
      return `${text}<rect x="${(x0 + i * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(MARGIN.top + PLOT_H - y).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${escapeXml(`${name}: ${formatTick(value)}`)}</title></rect>`;
    });
    return [label, ...rects];
  });
  return frame(spec.title, "", spec.yLabel, [...marks, ...bars, ...legend(names)]);
}
