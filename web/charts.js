// The overview's charts (uPlot, vendored): jobs per minute, mean duration and failure rate per bucket.
import { h } from './dom.js';

const COLORS = { submitted: '#1f5fbf', completed: '#1a7f37', failed: '#c62828', duration: '#8250df', rate: '#c62828' };

function series(label, stroke, unit) {
  return { label, stroke, width: 2, points: { show: true, size: 4 }, value: (u, v) => (v == null ? '—' : `${v}${unit}`) };
}

function chart(container, title, data, seriesList) {
  const width = Math.max(260, container.clientWidth || 320);
  const options = {
    title,
    width,
    height: 200,
    series: [{}, ...seriesList],
    axes: [{}, { size: 50 }],
    scales: { x: { time: true } },
    legend: { live: false },
  };
  const plot = new globalThis.uPlot(options, data, container);
  return plot;
}

/** Draw the three charts of a /api/stats answer into `root`; returns a function that removes them. */
export function renderCharts(root, stats) {
  root.replaceChildren();
  if (typeof globalThis.uPlot !== 'function') {
    root.append(h('p', { class: 'error' }, 'The chart library did not load.'));
    return () => {};
  }
  const minutes = stats.bucket_minutes;
  const xs = stats.buckets.map((b) => Date.parse(b.start) / 1000);
  const perMinute = (key) => stats.buckets.map((b) => +(b[key] / minutes).toFixed(3));
  const figures = [
    ['Jobs per minute', [xs, perMinute('submitted'), perMinute('completed'), perMinute('failed')],
      [series('submitted', COLORS.submitted, '/min'), series('completed', COLORS.completed, '/min'),
        series('failed', COLORS.failed, '/min')]],
    ['Mean duration of completed jobs (s)', [xs, stats.buckets.map((b) => b.duration_seconds.mean)],
      [series('mean duration', COLORS.duration, ' s')]],
    ['Failure rate (%)', [xs, stats.buckets.map((b) => (b.failure_rate == null ? null : +(b.failure_rate * 100).toFixed(1)))],
      [series('failure rate', COLORS.rate, '%')]],
  ];
  const plots = [];
  for (const [title, data, seriesList] of figures) {
    const holder = h('div', { class: 'chart', role: 'img', 'aria-label': title });
    root.append(holder);
    plots.push([holder, chart(holder, title, data, seriesList)]);
  }
  const resize = new ResizeObserver(() => {
    for (const [holder, plot] of plots) {
      const width = Math.max(260, holder.clientWidth);
      if (width !== plot.width) plot.setSize({ width, height: 200 });
    }
  });
  resize.observe(root);
  return () => {
    resize.disconnect();
    for (const [, plot] of plots) plot.destroy();
  };
}
