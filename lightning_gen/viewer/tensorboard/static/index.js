// Samples for TensorBoard: the dashboard's page. TensorBoard loads this module in an iframe whose base URL is
// the plugin's route prefix and calls `render()`. Four views of one run's records (the grid of prompts × steps,
// one prompt's history, two steps side by side, several runs side by side) share one set of controls.

import {el, formatMetric, logprobColour, splitEos, tokenView, verbatim, wordDiff} from './text.js';

const VIEWS = [
  ['grid', 'Grid'],
  ['history', 'Prompt history'],
  ['steps', 'Compare steps'],
  ['runs', 'Compare runs'],
];

const state = {
  runs: [], run: null, tags: [], tag: 'samples', view: 'grid',
  records: [], steps: [], prompts: [], prompt: 0, step: null, stepA: null, shownRuns: null, tokens: false,
};
const ui = {};

async function getJson(route, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of [].concat(value)) query.append(name, String(one));
  }
  const response = await fetch(`./${route}?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${route}: HTTP ${response.status}`);
  return body;
}

export async function render() {
  const css = document.createElement('link');
  css.rel = 'stylesheet';
  css.href = './style.css';
  document.head.appendChild(css);
  document.body.appendChild(buildControls());
  ui.status = document.body.appendChild(el('p', 'status', 'Loading…'));
  ui.main = document.body.appendChild(el('main'));
  try {
    await loadRuns();
  } catch (err) {
    ui.status.textContent = `Could not load the samples: ${err.message}`;
  }
}

function control(labelText, input) {
  const label = el('label', 'control');
  label.appendChild(el('span', 'label', labelText));
  label.appendChild(input);
  return label;
}

function select(id, onChange) {
  const node = el('select');
  node.id = id;
  node.addEventListener('change', () => onChange(node.value));
  return node;
}

function setOptions(node, options, value) {
  node.replaceChildren(...options.map(([optionValue, text]) => {
    const option = el('option', null, text);
    option.value = String(optionValue);
    return option;
  }));
  node.value = String(value);
}

function buildControls() {
  const bar = el('header', 'controls');
  bar.appendChild(el('h1', null, 'Samples'));
  ui.run = select('run', (run) => loadRun(run, null));
  ui.tag = select('tag', (tag) => loadRun(state.run, tag));
  ui.tagControl = control('tag', ui.tag);
  ui.views = el('span', 'views');
  for (const [view, text] of VIEWS) {
    const button = el('button', null, text);
    button.dataset.view = view;
    button.addEventListener('click', () => {
      state.view = view;
      draw();
    });
    ui.views.appendChild(button);
  }
  ui.prompt = select('prompt', (value) => {
    state.prompt = Number(value);
    draw();
  });
  ui.promptControl = control('prompt', ui.prompt);
  ui.stepA = select('step-a', (value) => {
    state.stepA = Number(value);
    draw();
  });
  ui.stepAControl = control('compare step', ui.stepA);
  ui.slider = el('input');
  ui.slider.type = 'range';
  ui.slider.id = 'step';
  ui.slider.min = '0';
  ui.slider.addEventListener('input', () => {
    state.step = state.steps[Number(ui.slider.value)];
    draw();
  });
  ui.stepLabel = el('output', 'step-label');
  const sliderControl = control('step', ui.slider);
  sliderControl.appendChild(ui.stepLabel);
  ui.tokens = el('input');
  ui.tokens.type = 'checkbox';
  ui.tokens.id = 'tokens';
  ui.tokens.addEventListener('change', () => {
    state.tokens = ui.tokens.checked;
    draw();
  });
  ui.tokensControl = control('log-prob per token', ui.tokens);
  ui.legend = el('span', 'legend');
  ui.legend.appendChild(el('span', 'label', 'guessed'));
  for (const p of [0.02, 0.25, 0.5, 0.75, 0.98]) {
    const swatch = el('span', 'swatch');
    swatch.style.backgroundColor = logprobColour(Math.log(p));
    swatch.title = `p = ${p}`;
    ui.legend.appendChild(swatch);
  }
  ui.legend.appendChild(el('span', 'label', 'sure'));
  ui.tokensControl.appendChild(ui.legend);
  const reload = el('button', 'reload', 'Reload');
  reload.addEventListener('click', () => loadRuns());
  bar.append(control('run', ui.run), ui.tagControl, ui.views, ui.promptControl, ui.stepAControl, sliderControl,
    ui.tokensControl, reload);
  return bar;
}

async function loadRuns() {
  state.runs = await getJson('runs');
  if (!state.runs.length) {
    ui.status.textContent = 'No run under this logdir has a samples.jsonl yet.';
    return;
  }
  const run = state.runs.includes(state.run) ? state.run : state.runs[0];
  setOptions(ui.run, state.runs.map((r) => [r, r]), run);
  await loadRun(run, state.tag);
}

async function loadRun(run, tag) {
  state.run = run;
  state.tags = await getJson('tags', {run});
  state.tag = state.tags.includes(tag) ? tag : state.tags.includes('samples') ? 'samples' : state.tags[0];
  setOptions(ui.tag, state.tags.map((t) => [t, t]), state.tag);
  ui.tagControl.hidden = state.tags.length < 2;
  state.records = state.tags.length ? await getJson('samples', {run, tag: state.tag}) : [];
  if (!state.records.length) {
    ui.status.textContent = `${run}: no samples yet`;
    ui.main.replaceChildren();
    return;
  }
  state.steps = [...new Set(state.records.map((r) => r.step))].sort((a, b) => a - b);
  const byIndex = new Map(state.records.map((r) => [r.index, r]));
  state.prompts = [...byIndex.keys()].sort((a, b) => a - b).map((i) => byIndex.get(i));
  if (!state.prompts.some((p) => p.index === state.prompt)) state.prompt = state.prompts[0].index;
  if (!state.steps.includes(state.step)) state.step = state.steps[state.steps.length - 1];
  if (!state.steps.includes(state.stepA)) state.stepA = state.steps[0];
  setOptions(ui.prompt, state.prompts.map((p) => [p.index, `${p.index}: ${oneLine(p.prompt)}`]), state.prompt);
  setOptions(ui.stepA, state.steps.map((s) => [s, `step ${s}`]), state.stepA);
  ui.slider.max = String(state.steps.length - 1);
  state.shownRuns = state.shownRuns ? state.shownRuns.filter((r) => state.runs.includes(r)) : [...state.runs];
  ui.status.textContent = `${state.run}: ${state.prompts.length} prompt(s), ${state.steps.length} sampled ` +
    `step(s) (${state.steps[0]} … ${state.steps[state.steps.length - 1]}), tag ${state.tag}`;
  await draw();
}

function oneLine(text) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 48 ? `${flat.slice(0, 47)}…` : flat;
}

function find(index, step, records = state.records) {
  return records.find((r) => r.index === index && r.step === step);
}

async function draw() {
  if (!state.records.length) return;
  ui.slider.value = String(state.steps.indexOf(state.step));
  ui.stepLabel.textContent = `${state.step}`;
  for (const button of ui.views.children) button.classList.toggle('active', button.dataset.view === state.view);
  ui.promptControl.hidden = !['history', 'runs'].includes(state.view);
  ui.stepAControl.hidden = state.view !== 'steps';
  ui.tokensControl.hidden = !state.records.some((r) => Array.isArray(r.token_logprobs));
  ui.legend.hidden = !state.tokens;
  const view = {grid: gridView, history: historyView, steps: stepsView, runs: runsView}[state.view];
  ui.main.replaceChildren(await view());
}

function metrics(record) {
  const list = el('span', 'metrics');
  for (const [name, value] of Object.entries(record.metrics || {})) {
    const metric = el('span', 'metric');
    metric.append(el('span', 'name', name), el('span', 'value', formatMetric(value)));
    list.appendChild(metric);
  }
  return list;
}

/** One sample: its completion (diff or token colours on request), the greedy completion, its scalars. */
function card(record, {ranges = null} = {}) {
  const node = el('div', 'sample');
  node.dataset.run = record.run;
  node.dataset.step = String(record.step);
  node.dataset.prompt = String(record.index);
  const text = el('div', 'text');
  const perToken = state.tokens && Array.isArray(record.token_logprobs) && !ranges;
  const tokens = perToken ? tokenView(record) : null;
  const [completion, eosText] = splitEos(record);
  text.appendChild(tokens && tokens.classList.contains('verbatim') ? tokens
    : verbatim(completion, {ranges, eos: record.eos === true, eosText}));
  node.appendChild(text);
  if (tokens && tokens.classList.contains('strip')) node.appendChild(tokens);
  if (record.greedy !== null && record.greedy !== undefined) {
    const greedy = el('div', 'greedy');
    greedy.append(el('span', 'label', 'greedy'), verbatim(record.greedy));
    node.appendChild(greedy);
  }
  node.appendChild(metrics(record));
  return node;
}

function promptHeader(prompt) {
  const node = el('div', 'prompt');
  node.appendChild(verbatim(prompt.prompt));
  if (prompt.reference !== null && prompt.reference !== undefined) {
    const reference = el('div', 'reference');
    reference.append(el('span', 'label', 'reference'), verbatim(prompt.reference));
    node.appendChild(reference);
  }
  return node;
}

function gridView() {
  const table = el('table', 'grid');
  const head = table.createTHead().insertRow();
  head.appendChild(el('th', 'corner', 'prompt'));
  for (const step of state.steps) {
    const th = el('th', step === state.step ? 'step current' : 'step', `step ${step}`);
    th.dataset.step = String(step);
    th.addEventListener('click', () => {
      state.step = step;
      draw();
    });
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const prompt of state.prompts) {
    const row = body.insertRow();
    const th = el('th', 'prompt-cell');
    th.appendChild(promptHeader(prompt));
    const open = el('button', 'open', 'history →');
    open.addEventListener('click', () => {
      state.prompt = prompt.index;
      state.view = 'history';
      draw();
    });
    th.appendChild(open);
    row.appendChild(th);
    for (const step of state.steps) {
      const td = row.insertCell();
      if (step === state.step) td.className = 'current';
      const record = find(prompt.index, step);
      td.appendChild(record ? card(record) : el('span', 'missing', 'not sampled'));
    }
  }
  requestAnimationFrame(() => table.querySelector('th.current')?.scrollIntoView({block: 'nearest', inline: 'nearest'}));
  return table;
}

function historyView() {
  const prompt = state.prompts.find((p) => p.index === state.prompt);
  const section = el('section', 'history');
  section.appendChild(promptHeader(prompt));
  const table = el('table', 'history');
  const body = table.createTBody();
  for (const step of state.steps) {
    const record = find(prompt.index, step);
    if (!record) continue;
    const row = body.insertRow();
    if (step === state.step) row.className = 'current';
    row.appendChild(el('th', 'step', `step ${step}`));
    row.insertCell().appendChild(card(record));
  }
  section.appendChild(table);
  return section;
}

function stepsView() {
  const [a, b] = [state.stepA, state.step];
  const table = el('table', 'compare');
  const head = table.createTHead().insertRow();
  head.append(el('th', 'corner', 'prompt'), el('th', 'step', `step ${a}`), el('th', 'step', `step ${b}`));
  const body = table.createTBody();
  for (const prompt of state.prompts) {
    const row = body.insertRow();
    const th = el('th', 'prompt-cell');
    th.appendChild(promptHeader(prompt));
    row.appendChild(th);
    const [left, right] = [find(prompt.index, a), find(prompt.index, b)];
    const diff = left && right ? wordDiff(splitEos(left)[0], splitEos(right)[0]) : {a: null, b: null};
    row.insertCell().appendChild(left ? card(left, {ranges: diff.a}) : el('span', 'missing', 'not sampled'));
    row.insertCell().appendChild(right ? card(right, {ranges: diff.b}) : el('span', 'missing', 'not sampled'));
  }
  return table;
}

async function runsView() {
  const section = el('section', 'runs');
  const picker = el('fieldset', 'run-picker');
  picker.appendChild(el('legend', null, 'runs'));
  for (const run of state.runs) {
    const box = el('input');
    box.type = 'checkbox';
    box.value = run;
    box.checked = state.shownRuns.includes(run);
    box.addEventListener('change', () => {
      state.shownRuns = state.runs.filter((r) => r === run ? box.checked : state.shownRuns.includes(r));
      draw();
    });
    const label = el('label');
    label.append(box, document.createTextNode(run));
    picker.appendChild(label);
  }
  section.appendChild(picker);
  const prompt = state.prompts.find((p) => p.index === state.prompt);
  section.appendChild(promptHeader(prompt));
  const records = state.shownRuns.length
    ? await getJson('samples', {run: state.shownRuns, tag: state.tag, prompt: state.prompt, step: state.step})
    : [];
  const columns = el('div', 'columns');
  for (const run of state.shownRuns) {
    const column = el('div', 'column');
    column.appendChild(el('h2', null, run));
    const record = records.find((r) => r.run === run);
    if (record) {
      column.appendChild(card(record));
    } else {
      const steps = await getJson('steps', {run, tag: state.tag}).catch(() => []);
      column.appendChild(el('span', 'missing', `not sampled at step ${state.step} under tag ${state.tag}` +
        (steps.length ? ` (this run's steps: ${steps.join(', ')})` : ' (no samples under this tag)')));
    }
    columns.appendChild(column);
  }
  section.appendChild(columns);
  return section;
}
