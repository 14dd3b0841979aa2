// Samples for TensorBoard: the dashboard's page. TensorBoard loads this module in an iframe whose base URL is
// the plugin's route prefix and calls `render()`. Four views of the samples (views.js) and one of the
// evaluations (evaluations.js) share one set of controls. The view lives in TensorBoard's URL
// (`#lightning_gen_samples&p.lightning_gen_samples.run=…`, the hash keys TensorBoard keeps for a plugin), so a
// reload or a shared link opens the same run, view, prompt, task and steps; ←/→ move between steps.

import {evaluationsView, olderStep} from './evaluations.js';
import {el, logprobColour} from './shown.js';
import {gridView, historyView, runsView, stepsView} from './views.js';

const PLUGIN = 'lightning_gen_samples';
const VIEWS = [
  ['grid', 'Grid', gridView],
  ['history', 'Prompt history', historyView],
  ['steps', 'Compare steps', stepsView],
  ['runs', 'Compare runs', runsView],
  ['evaluations', 'Evaluations', evaluationsView],
];
const NO_EVALUATIONS = {steps: [], core: [], tasks: []};
const NO_SAMPLES = 'No samples in this run (no samples.jsonl): add lightning_gen.GenerationMonitor(prompts, ' +
  'every_n_train_steps=100) to the Trainer\'s callbacks to sample while it trains.';

const state = {
  runs: [], run: null, tags: [], tag: 'samples', view: 'grid',
  records: [], steps: [], prompts: [], prompt: 0, step: null, old: null, oldestFirst: false,
  shownRuns: null, runSteps: [], tokens: false,
  evals: NO_EVALUATIONS, evalOld: null, task: null, // evalOld null: the evaluated step before the selected one
  find(index, step) {
    return this.records.find((r) => r.index === index && r.step === step);
  },
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

// ----------------------------------------------------------------- the view in TensorBoard's URL
function topWindow() {
  try {
    void window.parent.location.hash; // TensorBoard's page, same origin; a page opened alone is its own top
    return window.parent;
  } catch {
    return window;
  }
}

function hashEntries(win) {
  return win.location.hash.replace(/^#/, '').split('&').filter(Boolean);
}

function readUrl() {
  const prefix = `p.${PLUGIN}.`;
  const values = {};
  for (const entry of hashEntries(topWindow())) {
    const [key, value] = entry.split('=').map(decodeURIComponent);
    if (key.startsWith(prefix) && value !== undefined) values[key.slice(prefix.length)] = value;
  }
  const number = (text) => (text === undefined || text === '' || Number.isNaN(Number(text)) ? null : Number(text));
  if (values.run) state.run = values.run;
  if (values.tag) state.tag = values.tag;
  if (VIEWS.some(([view]) => view === values.view)) state.view = values.view;
  state.prompt = number(values.prompt) ?? state.prompt;
  state.step = number(values.step);
  state.old = number(values.old);
  if (state.view === 'evaluations') state.evalOld = state.old;
  state.task = values.task || null;
  state.oldestFirst = values.order === 'oldest';
  state.tokens = values.tokens === '1';
  if (values.runs !== undefined) state.shownRuns = values.runs.split(',').filter(Boolean).map(decodeURIComponent);
}

function writeUrl() {
  const win = topWindow();
  const prefix = `p.${PLUGIN}.`;
  const ours = {run: state.run, tag: state.tag, view: state.view, prompt: state.prompt, step: state.step};
  if (state.view === 'steps') ours.old = state.old;
  if (state.view === 'evaluations') Object.assign(ours, {old: state.evalOld, task: state.task});
  if (state.view === 'runs') ours.runs = state.shownRuns.map(encodeURIComponent).join(',');
  if (state.oldestFirst) ours.order = 'oldest';
  if (state.tokens) ours.tokens = '1';
  const kept = hashEntries(win).filter((entry) => !decodeURIComponent(entry.split('=')[0]).startsWith(prefix));
  if (!kept.length && win !== window) kept.push(PLUGIN); // TensorBoard's tab: the hash's first, bare entry
  const added = Object.entries(ours).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(prefix + k)}=${encodeURIComponent(String(v))}`);
  const url = new URL(win.location.href);
  url.hash = [...kept, ...added].join('&');
  if (url.href !== win.location.href) win.history.replaceState(win.history.state, '', url.href);
}

// ----------------------------------------------------------------- controls
function control(labelText, input) {
  const label = el('label', 'control');
  label.append(el('span', 'label', labelText), input);
  return label;
}

function select(id, onChange) {
  const node = el('select');
  node.id = id;
  node.addEventListener('change', () => onChange(node.value));
  return node;
}

function checkbox(id, onChange) {
  const box = el('input');
  box.type = 'checkbox';
  box.id = id;
  box.addEventListener('change', () => onChange(box.checked));
  return box;
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
  ui.run = select('run', (run) => loadRun(run, state.tag));
  ui.tag = select('tag', (tag) => loadRun(state.run, tag));
  ui.tagControl = control('tag', ui.tag);
  ui.views = el('span', 'views');
  for (const [view, text] of VIEWS) {
    const button = el('button', null, text);
    button.dataset.view = view;
    button.addEventListener('click', () => show({view}));
    ui.views.appendChild(button);
  }
  ui.prompt = select('prompt', (value) => show({prompt: Number(value)}));
  ui.promptControl = control('prompt', ui.prompt);
  ui.old = select('old', (value) => show(state.view === 'evaluations' ? {evalOld: Number(value)}
    : {old: Number(value)}));
  ui.new = select('new', (value) => show({step: Number(value)}));
  ui.compareControl = el('span', 'control');
  ui.compareControl.append(control('compare step', ui.old), control('with step', ui.new));
  ui.slider = el('input');
  ui.slider.type = 'range';
  ui.slider.id = 'step';
  ui.slider.min = '0';
  ui.slider.addEventListener('input', () => show({step: viewSteps()[Number(ui.slider.value)]}));
  ui.stepLabel = el('output', 'step-label');
  ui.sliderControl = control('step', ui.slider);
  ui.sliderControl.appendChild(ui.stepLabel);
  ui.task = select('task', (value) => show({task: value || null}));
  ui.taskControl = control('task', ui.task);
  ui.order = checkbox('oldest-first', (checked) => show({oldestFirst: checked}));
  ui.orderControl = control('oldest first', ui.order);
  ui.tokens = checkbox('tokens', (checked) => {
    state.tokens = checked;
    loadRun(state.run, state.tag); // the records again, now with (or without) their tokens
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
  bar.append(control('run', ui.run), ui.tagControl, ui.views, ui.promptControl, ui.taskControl, ui.compareControl,
    ui.sliderControl, ui.orderControl, ui.tokensControl, reload);
  return bar;
}

// ----------------------------------------------------------------- loading
async function loadRuns() {
  state.runs = await getJson('runs');
  if (!state.runs.length) {
    ui.status.textContent = 'No run under this logdir has a samples.jsonl or an evaluations.jsonl yet.';
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
  [state.records, state.prompts, state.evals] = await Promise.all([
    state.tags.length ? getJson('samples', {run, tag: state.tag, tokens: state.tokens ? 1 : 0}) : [],
    state.tags.length ? getJson('prompts', {run, tag: state.tag}) : [],
    getJson('evaluations', {run})]);
  const evaluated = state.evals.steps;
  if (!state.records.length && !evaluated.length) {
    ui.status.textContent = `${run}: no samples or evaluations yet`;
    ui.main.replaceChildren();
    return;
  }
  if (!state.records.length) state.view = 'evaluations'; // a run with a TaskMonitor only: nothing else to show
  state.steps = [...new Set(state.records.map((r) => r.step))].sort((a, b) => a - b);
  if (!state.evals.tasks.some((t) => t.task === state.task)) state.task = null;
  setOptions(ui.task, [['', 'all tasks'], ...state.evals.tasks.map((t) => [t.task, t.task])], state.task ?? '');
  const status = [];
  if (state.records.length) {
    if (!state.prompts.some((p) => p.index === state.prompt)) state.prompt = state.prompts[0].index;
    if (!state.steps.includes(state.old)) state.old = state.steps[0];
    setOptions(ui.prompt, state.prompts.map((p) => [p.index, `${p.index}: ${oneLine(p.prompt)}`]), state.prompt);
    status.push(`${state.prompts.length} prompt(s), ${state.steps.length} sampled step(s) ` +
      `(${state.steps[0]} … ${state.steps[state.steps.length - 1]}), tag ${state.tag}`);
  }
  if (evaluated.length) {
    status.push(`${state.evals.tasks.length} task(s) evaluated at ${evaluated.length} step(s) ` +
      `(${evaluated[0]} … ${evaluated[evaluated.length - 1]})`);
  }
  state.shownRuns = state.shownRuns ? state.shownRuns.filter((r) => state.runs.includes(r)) : [...state.runs];
  await loadRunSteps();
  const steps = viewSteps();
  state.step = nearest(steps, state.step ?? steps[steps.length - 1]);
  ui.status.textContent = `${state.run}: ${status.join('; ')}`;
  await draw();
}

/** The steps of the ticked runs together: the steps "compare runs" moves through. */
async function loadRunSteps() {
  const lists = await Promise.all(state.shownRuns.map((run) => getJson('steps', {run, tag: state.tag}).catch(() => [])));
  state.runSteps = [...new Set(lists.flat())].sort((a, b) => a - b);
}

function oneLine(text) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 48 ? `${flat.slice(0, 47)}…` : flat;
}

// ----------------------------------------------------------------- drawing
function viewSteps() {
  if (state.view === 'evaluations') return state.evals.steps.length ? state.evals.steps : state.steps;
  return state.view === 'runs' && state.runSteps.length ? state.runSteps : state.steps;
}

const act = {
  getJson,
  pick: (step) => show({step}),
  history: (prompt) => show({view: 'history', prompt}),
  tick: async (run, on) => {
    state.shownRuns = state.runs.filter((r) => (r === run ? on : state.shownRuns.includes(r)));
    await loadRunSteps();
    await draw();
  },
};

/** Where the step lands in `steps` when a view or a run changes the list: the nearest step, the earlier of two. */
function nearest(steps, step) {
  return steps.reduce((best, s) => (Math.abs(s - step) < Math.abs(best - step) ? s : best), steps[0]);
}

async function show(changes) {
  Object.assign(state, changes);
  state.step = nearest(viewSteps(), state.step);
  await draw();
}

function step(by) {
  const steps = viewSteps();
  const next = steps[steps.indexOf(state.step) + by];
  if (next !== undefined) show({step: next});
}

let drawing = 0;

async function draw() {
  const evaluations = state.view === 'evaluations';
  if (!state.records.length && !state.evals.steps.length) return;
  const ticket = ++drawing;
  const steps = viewSteps();
  ui.slider.max = String(steps.length - 1);
  ui.slider.value = String(steps.indexOf(state.step));
  ui.stepLabel.textContent = `${state.step}`;
  const older = evaluations ? (state.evals.steps.length ? olderStep(state) : null) : state.old;
  setOptions(ui.old, steps.map((s) => [s, `${s}`]), older);
  setOptions(ui.new, steps.map((s) => [s, `${s}`]), state.step);
  for (const button of ui.views.children) button.classList.toggle('active', button.dataset.view === state.view);
  ui.prompt.value = String(state.prompt);
  ui.promptControl.hidden = state.view !== 'history';
  ui.orderControl.hidden = state.view !== 'history';
  ui.order.checked = state.oldestFirst;
  ui.compareControl.hidden = state.view !== 'steps' && !(evaluations && state.evals.steps.length);
  ui.sliderControl.hidden = state.view === 'steps' || evaluations || !steps.length;
  ui.taskControl.hidden = !evaluations || state.evals.tasks.length < 2;
  ui.task.value = state.task ?? '';
  ui.tokensControl.hidden = evaluations || !state.records.some((r) => Array.isArray(r.token_logprobs));
  ui.tokens.checked = state.tokens;
  ui.legend.hidden = !state.tokens;
  const view = VIEWS.find(([name]) => name === state.view)[2];
  const {node, reveal} = state.records.length || evaluations
    ? await view(state, act) : {node: el('p', 'hint', NO_SAMPLES), reveal: () => {}};
  if (ticket !== drawing) return; // a later draw started while this one waited for its data
  ui.main.className = `view-${state.view}`;
  ui.main.replaceChildren(node);
  reveal(ui.main);
  writeUrl();
}

function onKey(event) {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target.closest && event.target.closest('input, select, textarea')) return; // they use the arrows
  if (event.key === 'ArrowLeft' || event.key === 'ArrowRight') {
    event.preventDefault();
    step(event.key === 'ArrowLeft' ? -1 : 1);
  }
}

export async function render() {
  const css = document.createElement('link');
  css.rel = 'stylesheet';
  css.href = './style.css';
  document.head.appendChild(css);
  document.body.appendChild(buildControls());
  ui.status = document.body.appendChild(el('p', 'status', 'Loading…'));
  ui.main = document.body.appendChild(el('main'));
  ui.main.tabIndex = -1; // focusable, so the arrow keys reach the page once it is clicked
  document.addEventListener('keydown', onKey);
  readUrl();
  try {
    await loadRuns();
  } catch (err) {
    ui.status.textContent = `Could not load the samples: ${err.message}`;
  }
}
