// Charts drawn with the vendored uPlot (relay/static/vendor/uplot, see VENDORED.md). Values are
// plotted as numbers; every amount shown as text comes from the relay's decimal strings.
import uPlot from "/static/vendor/uplot/uPlot.esm.js";

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];
const charts = new Map();

function draw(container, title, xs, series, { bars = false } = {}) {
  charts.get(container)?.destroy();
  const width = Math.max(300, container.clientWidth || 600);
  const options = {
    title, width, height: 220,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
      fill: bars ? COLORS[i % COLORS.length] + "33" : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
    }))],
    // Spend is often fractions of a cent a day: show significant digits, not a row of zeros.
    axes: [{}, { size: 80, values: (u, ticks) => ticks.map((v) => (v === 0 || Math.abs(v) >= 1 ? String(v) : v.toPrecision(2))) }],
  };
  const chart = new uPlot(options, [xs, ...series.map((s) => s.values)], container);
  charts.set(container, chart);
  container.dataset.points = String(xs.length);
  container.dataset.series = series.map((s) => s.label).join(",");
  return chart;
}

const epoch = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;

// rows: GET /v1/usage/daily's data (one row per day and model).
export function dailyCharts(spendNode, tokensNode, rows, first, last) {
  const days = [];
  for (let t = epoch(first); t <= epoch(last); t += 86_400) days.push(t);
  const index = new Map(days.map((t, i) => [t, i]));
  const models = [...new Set(rows.map((r) => r.model))].sort();
  const spend = models.map((model) => ({ label: model, values: days.map(() => 0) }));
  const input = { label: "input tokens", values: days.map(() => 0) };
  const output = { label: "output tokens", values: days.map(() => 0) };
  for (const row of rows) {
    const i = index.get(epoch(row.day));
    if (i === undefined) continue;
    spend[models.indexOf(row.model)].values[i] += Number(row.cost_usd);
    input.values[i] += row.input_tokens;
    output.values[i] += row.output_tokens;
  }
  draw(spendNode, "Spend per day (USD) by model", days, spend, { bars: models.length === 1 });
  draw(tokensNode, "Tokens per day", days, [input, output]);
}

// samples: GET /admin/stats/live's series.
export function liveChart(node, samples) {
  draw(node, "Requests and errors per second", samples.map((s) => s.at),
    [{ label: "requests/s", values: samples.map((s) => s.requests_per_s) },
      { label: "errors/s", values: samples.map((s) => s.errors_per_s) }]);
}
