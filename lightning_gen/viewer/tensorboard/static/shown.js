// Samples for TensorBoard: laying out texts the plugin has already made visible and diffed. The page has no rule
// of its own for characters or differences: the routes send each text as items (the plugin's `shown` module,
// with the rule and the diff the terminal uses), and this module turns items into DOM nodes. Every text reaches
// the page as DOM text (createTextNode / textContent), never as HTML: `<b>` stays `<b>`.

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** The background colour of a token the model gave log-probability `logprob`: red guessed … green sure. */
export function logprobColour(logprob) {
  if (logprob === null || logprob === undefined) return 'transparent';
  const p = Math.exp(logprob);
  return `hsl(${Math.round(120 * p)}, 75%, 82%)`;
}

function tokenTitle(token) {
  const head = `token ${token.token + 1}: id ${token.id}`;
  if (!('logprob' in token)) return `${head}, not scored (the context cropped it)`;
  if (token.logprob === null) return `${head}, log-prob not finite`;
  return `${head}, log-prob ${token.logprob.toFixed(3)} (p = ${Math.exp(token.logprob).toFixed(3)})`;
}

/** Appends `items` to `parent`: characters as text, marks as `span.mark` (a tooltip says what each stands for),
 * diff groups as `span.del` / `span.ins`, token groups as `span.tok` coloured by their log-prob. */
export function appendItems(parent, items) {
  for (const item of items) {
    if (typeof item === 'string') {
      parent.appendChild(document.createTextNode(item));
    } else if (item.mark === 'eos') {
      const badge = el('span', 'eos', item.text);
      badge.title = item.title;
      parent.appendChild(badge);
    } else if (item.mark !== undefined) {
      const mark = el('span', `mark ${item.mark}`, item.text);
      mark.title = item.title;
      parent.appendChild(mark);
      // A newline mark ends its line where the view keeps lines (`.nl`, hidden in the compact history).
      if (item.mark === 'newline') parent.appendChild(el('br', 'nl'));
    } else if (item.op !== undefined) {
      const group = el('span', item.op === 'del' ? 'del' : 'ins');
      group.title = item.op === 'del' ? 'only in the earlier step' : 'only in the later step';
      appendItems(group, item.items);
      parent.appendChild(group);
    } else if (item.token !== undefined) {
      const token = el('span', 'tok');
      token.style.backgroundColor = logprobColour(item.logprob);
      token.title = tokenTitle(item);
      appendItems(token, item.items);
      const eos = token.querySelector('.eos');
      if (eos) eos.title = `${eos.title}; ${token.title}`;
      parent.appendChild(token);
    }
  }
  return parent;
}

/** A shown text as a `span.verbatim`. */
export function verbatim(items) {
  return appendItems(el('span', 'verbatim'), items);
}

/** A metric's value as shown beside a sample: 4 significant digits; null (not finite) as "n/a". */
export function formatMetric(value) {
  if (value === null || value === undefined) return 'n/a';
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}
