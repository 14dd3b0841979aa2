// Samples for TensorBoard: the small curve beside each prompt, its `mean_logprob` / `reference_loss` over the
// sampled steps. A point is a step: clicking it opens that step, and the selected step's point is marked.

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

/** The curves of one prompt's `records` (any order), one per metric they have; `onPick(step)` on a click. */
export function curves(records, {step, onPick}) {
  const box = el('div', 'curves');
  const sorted = [...records].sort((a, b) => a.step - b.step);
  for (const name of METRICS) {
    const points = sorted.filter((r) => typeof (r.metrics || {})[name] === 'number')
      .map((r) => [r.step, r.metrics[name]]);
    if (!points.length) continue;
    box.appendChild(curve(name, points, step, onPick));
  }
  return box;
}

function curve(name, points, selected, onPick) {
  const row = el('div', 'curve');
  row.dataset.metric = name;
  const steps = points.map(([s]) => s);
  const values = points.map(([, v]) => v);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...values), Math.max(...values)];
  const x = (s) => PAD + (x1 > x0 ? (s - x0) / (x1 - x0) : 0.5) * (WIDTH - 2 * PAD);
  const y = (v) => HEIGHT - PAD - (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5) * (HEIGHT - 2 * PAD);
  const chart = svg('svg', {width: WIDTH, height: HEIGHT, viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'spark'});
  chart.appendChild(svg('polyline', {points: points.map(([s, v]) => `${x(s)},${y(v)}`).join(' '), class: 'line'}));
  for (const [s, v] of points) {
    const point = svg('g', {class: s === selected ? 'point current' : 'point', 'data-step': s});
    point.appendChild(svg('circle', {cx: x(s), cy: y(v), r: 6, class: 'hit'}));
    point.appendChild(svg('circle', {cx: x(s), cy: y(v), r: s === selected ? 3.5 : 2, class: 'dot'}));
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
  return row;
}
