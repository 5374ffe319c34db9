/** One bar: a label under it and its value. */
export type Bar = { label: string; value: number };

const width = 480;
const height = 200;
const pad = { top: 12, right: 8, bottom: 40, left: 48 };

/**
 * A bar chart as SVG with a text alternative: the chart is `role="img"`
 * labelled by its title, and the same numbers follow in a visually plain table.
 */
export function BarChart({ title, bars, unit }: { title: string; bars: Bar[]; unit: string }) {
  const max = Math.max(1, ...bars.map((b) => b.value));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(1, bars.length);
  const id = `chart-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return (
    <figure class="panel" aria-labelledby={id}>
      <figcaption id={id}>
        <strong>{title}</strong>
      </figcaption>
      <svg class="chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={id}>
        <title>{title}</title>
        <line
          class="axis"
          x1={pad.left}
          x2={width - pad.right}
          y1={pad.top + plotH}
          y2={pad.top + plotH}
        />
        <text x={pad.left - 6} y={pad.top + 4} text-anchor="end">
          {max.toLocaleString("en-US")}
        </text>
        <text x={pad.left - 6} y={pad.top + plotH} text-anchor="end">
          0
        </text>
        {bars.map((bar, i) => {
          const h = (bar.value / max) * plotH;
          const x = pad.left + i * step + step * 0.15;
          return (
            <g key={bar.label}>
              <rect
                class="bar"
                x={x}
                y={pad.top + plotH - h}
                width={step * 0.7}
                height={h}
                data-value={bar.value}
              >
                <title>{`${bar.label}: ${bar.value.toLocaleString("en-US")} ${unit}`}</title>
              </rect>
              {(bars.length <= 8 || i % Math.ceil(bars.length / 7) === 0) && (
                <text x={x + step * 0.35} y={height - pad.bottom + 14} text-anchor="middle">
                  {bar.label.length > 12 ? `${bar.label.slice(0, 11)}…` : bar.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
