// Samples for TensorBoard: the evaluations view, what TaskMonitor measured. `core` on top, then a row per task:
// its metrics over the evaluated steps (a point opens that step), and the examples that flipped between two
// steps, learned (wrong → right) and forgotten (right → wrong), each with its text (made visible by the plugin),
// the model's pick at both steps and the gold. A bits-per-byte task lists its documents instead.

import {curves} from './curve.js';
import {el, formatMetric, verbatim} from './shown.js';

const METRICS = ['acc', 'acc_norm', 'loss', 'centered', 'bpb'];
const SIZE = {width: 180, height: 30};
export const HINT = 'No evaluations in this run (no evaluations.jsonl): add lightning_gen.TaskMonitor("tasks.yaml", ' +
  'every_n_train_steps=100) to the Trainer\'s callbacks to score tasks while it trains.';

/** The step compared with the selected one: the one chosen from the list, else the evaluated step before it. */
export function olderStep(state) {
  const steps = state.evals.steps;
  if (state.evalOld !== null && steps.includes(state.evalOld)) return state.evalOld;
  return steps[Math.max(0, steps.indexOf(state.step) - 1)];
}

function letter(i) {
  return String.fromCharCode(65 + i); // A, B, C …: an option's place in the task file
}

function info(title, type, points, state, act, older) {
  const node = el('div', 'task-info');
  const head = el('div', 'task-head');
  head.append(el('span', 'task-name', title), el('span', 'task-type', type));
  const options = {step: state.step, older, onPick: act.pick, metrics: [...METRICS, 'core'], ...SIZE};
  node.append(head, curves(points, options));
  return node;
}

function option(items, i, example, older, newer) {
  const item = el('li', i === example.gold ? 'option gold' : 'option');
  item.append(el('span', 'letter', letter(i)), verbatim(items));
  const badges = [];
  if (i === example.gold) badges.push(['gold', 'gold']);
  if (example.picks.old === i) badges.push(['pick old', `step ${older}`]);
  if (example.picks.new === i) badges.push(['pick new', `step ${newer}`]);
  for (const [kind, text] of badges) {
    const badge = el('span', `badge ${kind}`, text);
    if (kind !== 'gold') badge.title = `the model's pick at ${text}`;
    item.appendChild(badge);
  }
  const lls = example.loglikelihoods;
  if (lls.old && lls.new && lls.old.length > i) {
    item.title = `log-likelihood ${formatMetric(lls.old[i])} at step ${older}, ${formatMetric(lls.new[i])} at ${newer}`;
  }
  return item;
}

/** One flipped example: its question, the options with the gold and both steps' picks marked, its ending. */
function exampleCard(example, type, kind, older, newer) {
  const card = el('div', 'example');
  card.dataset.index = String(example.index);
  const head = el('div', 'example-head');
  head.appendChild(el('span', 'index', `example ${example.index}`));
  if (type === 'language_modeling') {
    const [right, wrong] = kind === 'learned' ? [newer, older] : [older, newer];
    head.appendChild(el('span', 'picks', `greedy decoding gives the continuation at step ${right}, not at ${wrong}`));
  } else if (example.picks.old !== null && example.picks.new !== null) {
    head.appendChild(el('span', 'picks', `picked ${letter(example.picks.old)} at step ${older}, ` +
      `${letter(example.picks.new)} at ${newer}; gold ${letter(example.gold)}`));
  }
  if (example.fewshot) head.appendChild(el('span', 'label', 'few-shot examples included'));
  card.appendChild(head);
  if (!example.options) return card;
  if (example.question) card.appendChild(el('div', 'question')).appendChild(verbatim(example.question));
  if (type === 'language_modeling') {
    card.appendChild(el('div', 'continuation')).appendChild(verbatim(example.options[0]));
  } else {
    const list = el('ol', 'options');
    example.options.forEach((items, i) => list.appendChild(option(items, i, example, older, newer)));
    card.appendChild(list);
  }
  if (example.ending) {
    const ending = card.appendChild(el('div', 'ending'));
    ending.append(el('span', 'label', 'continuation'), verbatim(example.ending));
  }
  return card;
}

function flipColumn(kind, flipped, older, newer) {
  const column = el('div', `flips ${kind}`);
  const examples = flipped[kind];
  const [right, wrong] = kind === 'learned' ? [newer, older] : [older, newer];
  const head = el('div', 'flips-head');
  head.append(el('span', 'count', `${kind} ${examples.length}`),
    el('span', 'label', `right at step ${right}, wrong at ${wrong}`));
  column.appendChild(head);
  const list = column.appendChild(el('div', 'examples compact')); // newline marks inline: one block per option
  for (const example of examples) list.appendChild(exampleCard(example, flipped.type, kind, older, newer));
  if (!examples.length) list.appendChild(el('span', 'missing', 'none'));
  return column;
}

function documentsTable(flipped, older, newer) {
  const table = el('table', 'documents');
  const head = table.createTHead().insertRow();
  head.append(el('th', null, 'document'), el('th', 'number', `bpb at ${older}`), el('th', 'number', `bpb at ${newer}`),
    el('th', 'number', 'change'));
  const body = table.createTBody();
  for (const doc of flipped.documents) {
    const row = body.insertRow();
    row.dataset.index = String(doc.index);
    row.insertCell().textContent = doc.name ?? `document ${doc.index}`;
    for (const value of [doc.old, doc.new]) {
      const cell = row.insertCell();
      cell.className = 'number';
      cell.textContent = formatMetric(value);
    }
    const change = row.insertCell();
    const delta = doc.old === null || doc.new === null ? null : doc.new - doc.old;
    change.className = `number ${delta === null || delta === 0 ? '' : delta < 0 ? 'better' : 'worse'}`;
    change.textContent = delta === null ? 'n/a' : `${delta > 0 ? '+' : ''}${formatMetric(delta)}`;
  }
  return table;
}

function taskRow(task, flipped, state, act, older, newer) {
  const row = el('div', 'task-row');
  row.dataset.task = task.task;
  const noun = task.type === 'bits_per_byte' ? 'document' : 'example';
  const type = `${task.type.replace(/_/g, ' ')} · ${task.examples} ${noun}(s)`;
  const about = info(task.task, type, task.points, state, act, older);
  if (!task.described && task.type !== 'bits_per_byte') {
    about.appendChild(el('div', 'label', 'examples by index only: this run wrote no evaluation_examples.jsonl'));
  }
  row.appendChild(about);
  if (!flipped || flipped.missing) {
    row.appendChild(el('div', 'missing', flipped ? flipped.missing : 'no record'));
  } else if (flipped.documents) {
    row.appendChild(el('div', 'flips documents-cell')).appendChild(documentsTable(flipped, older, newer));
  } else {
    row.append(flipColumn('learned', flipped, older, newer), flipColumn('forgotten', flipped, older, newer));
  }
  return row;
}

export async function evaluationsView(state, act) {
  const section = el('section', 'evaluations');
  if (!state.evals.steps.length) {
    section.appendChild(el('p', 'hint', HINT));
    return {node: section, reveal: () => {}};
  }
  const [older, newer] = [olderStep(state), state.step];
  const params = {run: state.run, old: older, new: newer};
  if (state.task !== null) params.task = state.task;
  // One step compared with itself (the first evaluation, by default): nothing flipped, say why.
  const same = {missing: `step ${newer} compared with itself: choose another step to see what changed`};
  const flips = older === newer ? state.evals.tasks.map((t) => ({task: t.task, ...same}))
    : await act.getJson('flips', params);
  if (state.task === null && state.evals.core.length) {
    const row = section.appendChild(el('div', 'task-row core'));
    row.dataset.task = 'core';
    const centred = state.evals.tasks.filter((t) => t.points.some((p) => 'centered' in p.metrics)).length;
    row.append(info('core', `the mean centred accuracy of ${centred} task(s)`, state.evals.core, state, act, older));
  }
  for (const task of state.evals.tasks.filter((t) => state.task === null || t.task === state.task)) {
    section.appendChild(taskRow(task, flips.find((f) => f.task === task.task), state, act, older, newer));
  }
  return {node: section, reveal: () => {}};
}
