// Samples for TensorBoard: small curves of metrics over steps: beside each prompt its `mean_logprob` /
// `reference_loss` over the sampled steps, and in the evaluations view each task's metrics over the evaluated
// steps. A point is a step: clicking it opens that step, and the selected step's point is marked.

import {el, formatMetric} from './shown.js';

const METRICS = ['mean_logprob', 'reference_loss'];
const WIDTH = 120;
const HEIGHT = 24;
const PAD = 3;
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/** The curves of `records` (any order, each `{step, metrics}`), one per name of `metrics` they have (by default
 * a prompt's); `onPick(step)` on a click; `width` × `height` pixels each. With `older`, a step compared with the
 * selected one: its point ringed, and the change since it beside the value. */
export function curves(records, {step, onPick, metrics = METRICS, width = WIDTH, height = HEIGHT, older = null}) {
  const box = el('div', 'curves');
  const sorted = [...records].sort((a, b) => a.step - b.step);
  for (const name of metrics) {
    const points = sorted.filter((r) => typeof (r.metrics || {})[name] === 'number')
      .map((r) => [r.step, r.metrics[name]]);
    if (!points.length) continue;
    box.appendChild(curve(name, points, {selected: step, older, onPick, width, height}));
  }
  return box;
}

function curve(name, points, {selected, older, onPick, width, height}) {
  const row = el('div', 'curve');
  row.dataset.metric = name;
  const steps = points.map(([s]) => s);
  const values = points.map(([, v]) => v);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...values), Math.max(...values)];
  const x = (s) => PAD + (x1 > x0 ? (s - x0) / (x1 - x0) : 0.5) * (width - 2 * PAD);
  const y = (v) => height - PAD - (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5) * (height - 2 * PAD);
  const chart = svg('svg', {width, height, viewBox: `0 0 ${width} ${height}`, class: 'spark'});
  chart.appendChild(svg('polyline', {points: points.map(([s, v]) => `${x(s)},${y(v)}`).join(' '), class: 'line'}));
  for (const [s, v] of points) {
    const kind = s === selected ? ' current' : s === older ? ' older' : '';
    const point = svg('g', {class: `point${kind}`, 'data-step': s});
    point.appendChild(svg('circle', {cx: x(s), cy: y(v), r: 6, class: 'hit'}));
    point.appendChild(svg('circle', {cx: x(s), cy: y(v), r: s === selected || s === older ? 3.5 : 2, class: 'dot'}));
    const title = svg('title', {});
    title.textContent = `step ${s}: ${name} ${formatMetric(v)} (click to open this step)`;
    point.appendChild(title);
    point.addEventListener('click', (event) => {
      event.stopPropagation();
      onPick(s);
    });
    chart.appendChild(point);
  }
  const at = points.find(([s]) => s === selected);
  row.append(el('span', 'name', name), chart, el('span', 'value', at ? formatMetric(at[1]) : ''));
  const before = points.find(([s]) => s === older);
  if (at && before && older !== selected) {
    const change = at[1] - before[1];
    const size = Number(Math.abs(change).toPrecision(2)); // the change at a glance; the values have 4 digits
    const delta = el('span', 'delta', size === 0 ? '±0' : `${change > 0 ? '+' : '−'}${size}`);
    delta.title = `since step ${older}`;
    row.appendChild(delta);
  }
  return row;
}
