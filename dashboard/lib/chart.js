// Time charts with uPlot, loaded from jobscope's own server (vendor/uplot/) the first time a page draws one.
import { dur } from './format.js';

const HEIGHT = 190;

/** The y axis's labels: a percentage, a count of runs, or seconds as a duration. */
function yLabels(unit) {
  return (_u, ticks) => ticks.map((v) => (v === null ? '' : unit === '%' ? `${v}%` : unit === 'runs' ? String(v) : dur(v * 1000)));
}

/** A small time chart (uPlot): one or more series over bucket start times. */
export async function chart(el, title, xs, series, unit) {
  const { default: uPlot } = await import('../vendor/uplot/uPlot.esm.js');
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    title,
    width,
    height: HEIGHT,
    scales: { x: { time: true }, y: unit === '%' ? { range: [0, 100] } : { auto: true } },
    axes: [{}, { values: yLabels(unit), size: 60 }],
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: true, size: 4 }, spanGaps: false }))],
  };
  el.replaceChildren();
  const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: HEIGHT })).observe(el);
  return plot;
}
