// Samples for TensorBoard: the four views of the records. Each takes the page's state and `act` (what a click
// may do: pick a step, open a prompt's history) and returns its DOM; `reveal` runs once it is on the page.
//   grid     prompts × steps, the selected step's column always in view beside the sticky prompt column;
//   history  one prompt's steps, newest first (a toggle), one compact row each, scrolled to the selected step;
//   steps    two steps side by side: the greedy completions diffed, the sampled ones beside them, and the
//            share of words kept per prompt;
//   runs     every prompt at one step across the ticked runs, each at its sampled step nearest to it.

import {curves} from './curve.js';
import {el, formatMetric, verbatim} from './shown.js';

function metrics(record) {
  const list = el('span', 'metrics');
  for (const [name, value] of Object.entries(record.metrics || {})) {
    const metric = el('span', 'metric');
    metric.append(el('span', 'name', name), el('span', 'value', formatMetric(value)));
    list.appendChild(metric);
  }
  return list;
}

function labelled(label, items) {
  const node = el('div', label);
  node.append(el('span', 'label', label), verbatim(items));
  return node;
}

/** One sample: its completion (or its tokens coloured by log-prob), the greedy completion, its scalars.
 * `shown` replaces the record's own shown texts (the compare view's diffs). */
function card(record, state, {shown = null, withMetrics = true} = {}) {
  const node = el('div', 'sample');
  node.dataset.run = record.run;
  node.dataset.step = String(record.step);
  node.dataset.prompt = String(record.index);
  const texts = {...record.shown, ...(shown || {})};
  const tokens = state.tokens && texts.tokens;
  const text = el('div', 'text');
  text.appendChild(verbatim(tokens || texts.completion));
  node.appendChild(text);
  if (texts.greedy) node.appendChild(labelled('greedy', texts.greedy));
  if (withMetrics) node.appendChild(metrics(record));
  return node;
}

function missing(text) {
  return el('span', 'missing', text);
}

/** The prompt (and its reference) with its curves; `open` adds a link to its history. */
function promptCell(prompt, state, act, {open = true, records = state.records} = {}) {
  const cell = el('th', 'prompt-cell');
  cell.dataset.prompt = String(prompt.index);
  const head = el('div', 'prompt');
  head.appendChild(verbatim(prompt.shown.prompt));
  cell.appendChild(head);
  if (prompt.shown.reference) cell.appendChild(labelled('reference', prompt.shown.reference));
  cell.appendChild(curves(records.filter((r) => r.index === prompt.index), {step: state.step, onPick: act.pick}));
  if (open) {
    const button = el('button', 'open', 'history →');
    button.addEventListener('click', () => act.history(prompt.index));
    cell.appendChild(button);
  }
  return cell;
}

/** Scrolls `scroller` so that `target` shows whole beside the sticky column (`sticky` wide) and under the
 * sticky header (`top` high): scrollIntoView would put it under them. */
export function revealIn(scroller, target, {sticky = 0, top = 0} = {}) {
  const box = scroller.getBoundingClientRect();
  const r = target.getBoundingClientRect();
  // The part of the scroller that shows content: without its scrollbars.
  const [left, right] = [box.left + scroller.clientLeft + sticky, box.left + scroller.clientLeft + scroller.clientWidth];
  const [upper, lower] = [box.top + scroller.clientTop + top, box.top + scroller.clientTop + scroller.clientHeight];
  if (r.left < left) scroller.scrollLeft -= left - r.left;
  else if (r.right > right) scroller.scrollLeft += Math.min(r.right - right, r.left - left);
  if (r.top < upper) scroller.scrollTop -= upper - r.top;
  else if (r.bottom > lower) scroller.scrollTop += Math.min(r.bottom - lower, r.top - upper);
}

/** Prompts (rows) × `columns`: the sticky prompt column, then `head(column)` atop and `fill(cell, prompt, column)`. */
function promptTable(className, state, act, columns, {head, fill}) {
  const table = el('table', className);
  const header = table.createTHead().insertRow();
  header.appendChild(el('th', 'corner', 'prompt'));
  for (const column of columns) header.appendChild(head(column));
  const body = table.createTBody();
  for (const prompt of state.prompts) {
    const row = body.insertRow();
    row.appendChild(promptCell(prompt, state, act));
    for (const column of columns) fill(row.insertCell(), prompt, column);
  }
  return table;
}

export function gridView(state, act) {
  const table = promptTable('grid', state, act, state.steps, {
    head: (step) => {
      const th = el('th', step === state.step ? 'step current' : 'step', `step ${step}`);
      th.dataset.step = String(step);
      th.addEventListener('click', () => act.pick(step));
      return th;
    },
    fill: (td, prompt, step) => {
      if (step === state.step) td.className = 'current';
      const record = state.find(prompt.index, step);
      td.appendChild(record ? card(record, state) : missing('not sampled'));
    },
  });
  const reveal = (scroller) => {
    const current = table.querySelector('th.step.current');
    if (current) revealIn(scroller, current, {sticky: table.querySelector('th.corner').offsetWidth});
  };
  return {node: table, reveal};
}

export function historyView(state, act) {
  const prompt = state.prompts.find((p) => p.index === state.prompt);
  const section = el('section', 'history compact');
  const head = el('table', 'history-head');
  head.insertRow().appendChild(promptCell(prompt, state, act, {open: false}));
  section.appendChild(head);
  const records = state.steps.map((step) => state.find(prompt.index, step)).filter(Boolean);
  if (!state.oldestFirst) records.reverse();
  const names = [...new Set(records.flatMap((r) => Object.keys(r.metrics || {})))];
  const hasGreedy = records.some((r) => r.shown.greedy);
  const table = el('table', 'history');
  const header = table.createTHead().insertRow();
  header.append(el('th', 'step', 'step'), el('th', 'text', 'completion'));
  if (hasGreedy) header.appendChild(el('th', 'text', 'greedy'));
  for (const name of names) header.appendChild(el('th', 'metric', name));
  const body = table.createTBody();
  for (const record of records) {
    const row = body.insertRow();
    row.dataset.step = String(record.step);
    if (record.step === state.step) row.className = 'current';
    const step = el('th', 'step', String(record.step));
    step.addEventListener('click', () => act.pick(record.step));
    row.appendChild(step);
    const sample = row.insertCell();
    sample.className = 'text';
    sample.appendChild(card(record, state, {shown: {greedy: null}, withMetrics: false}));
    if (hasGreedy) {
      const greedy = row.insertCell();
      greedy.className = 'text greedy-cell';
      greedy.appendChild(record.shown.greedy ? verbatim(record.shown.greedy) : missing('none'));
    }
    for (const name of names) row.insertCell().appendChild(el('span', 'value', formatMetric((record.metrics || {})[name])));
  }
  section.appendChild(table);
  const reveal = (scroller) => {
    const current = table.querySelector('tr.current');
    if (current) revealIn(scroller, current, {top: table.tHead.offsetHeight});
  };
  return {node: section, reveal};
}

export async function stepsView(state, act) {
  const [older, newer] = [state.old, state.step];
  const entries = await act.getJson('compare', {run: state.run, tag: state.tag, old: older, new: newer});
  const table = el('table', 'compare');
  const head = table.createTHead().insertRow();
  const diffed = entries.length ? entries[0].diffed : 'greedy';
  head.append(el('th', 'corner', 'prompt'), el('th', 'step', `step ${older}`), el('th', 'step', `step ${newer}`),
    el('th', 'same', 'kept'));
  head.lastChild.title = `the share of the ${diffed === 'greedy' ? 'greedy completion' : 'completion'}'s words kept`;
  const body = table.createTBody();
  for (const entry of entries) {
    const row = body.insertRow();
    row.appendChild(promptCell(entry, state, act));
    for (const side of ['old', 'new']) {
      const record = entry[side];
      const cell = row.insertCell();
      if (!record) {
        cell.appendChild(missing('not sampled'));
        continue;
      }
      // The diffed text first: the greedy completions change only where the model did.
      const node = card(record, state, {shown: {tokens: null}});
      if (diffed === 'greedy' && node.querySelector('.greedy')) node.prepend(node.querySelector('.greedy'));
      const sampled = node.querySelector('.text');
      if (diffed === 'greedy') sampled.prepend(el('span', 'label', 'sampled'));
      cell.appendChild(node);
    }
    const same = row.insertCell();
    same.className = 'same';
    same.textContent = entry.similarity === null ? '–' : `${Math.round(100 * entry.similarity)}%`;
  }
  return {node: table, reveal: () => {}};
}

export async function runsView(state, act) {
  const section = el('section', 'runs');
  const picker = el('fieldset', 'run-picker');
  picker.appendChild(el('legend', null, 'runs'));
  for (const run of state.runs) {
    const box = el('input');
    box.type = 'checkbox';
    box.value = run;
    box.checked = state.shownRuns.includes(run);
    box.addEventListener('change', () => act.tick(run, box.checked));
    const label = el('label');
    label.append(box, document.createTextNode(run));
    picker.appendChild(label);
  }
  section.appendChild(picker);
  const records = state.shownRuns.length
    ? await act.getJson('samples', {run: state.shownRuns, tag: state.tag, step: state.step, nearest: 1,
      tokens: state.tokens ? 1 : 0})
    : [];
  const table = promptTable('across', state, act, state.shownRuns, {
    head: (run) => {
      const at = records.find((r) => r.run === run);
      const th = el('th', 'run');
      th.dataset.run = run;
      th.append(el('div', 'run-name', run), el('div', 'run-step', at ? `step ${at.step}` : 'no samples'));
      if (at && at.step !== state.step) th.appendChild(el('div', 'nearest', `nearest to ${state.step}`));
      return th;
    },
    fill: (td, prompt, run) => {
      const record = records.find((r) => r.run === run && r.index === prompt.index);
      td.appendChild(record ? card(record, state) : missing('not sampled'));
    },
  });
  section.appendChild(table);
  return {node: section, reveal: () => {}};
}
