// How a sample's text is shown: verbatim, whitespace made visible, differences and token log-probs coloured.
// Every text reaches the page as DOM text (createTextNode / textContent), never as HTML: `<b>` stays `<b>`.

/** One display piece per UTF-16 unit of `text`: `[shown, why]`, `why` null for a character shown as itself. */
export function pieces(text) {
  // A space is trailing when only spaces follow it up to the end of its line (a whole-space text included).
  const trailing = new Array(text.length).fill(false);
  let onlySpacesAfter = true;
  for (let i = text.length - 1; i >= 0; i--) {
    if (text[i] === '\n') onlySpacesAfter = true;
    else if (text[i] === ' ' && onlySpacesAfter) trailing[i] = true;
    else onlySpacesAfter = false;
  }
  const out = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const code = c.charCodeAt(0);
    if (c === '\n') out.push(['⏎\n', 'newline']);
    else if (c === '\t') out.push(['⇥\t', 'tab']);
    else if (trailing[i]) out.push(['·', 'trailing space']);
    else if (code < 0x20) out.push([String.fromCharCode(0x2400 + code), `control character U+${hex(code)}`]);
    else if (code === 0x7f) out.push(['␡', 'control character U+007F']);
    else if (c === '\u00a0') out.push(['⍽', 'no-break space']);
    else out.push([c, null]);
  }
  return out;
}

function hex(code) {
  return code.toString(16).toUpperCase().padStart(4, '0');
}

/** Appends `parts[start:end]` to `parent`: plain runs as text nodes, markers as `span.mark` with a tooltip. */
function appendPieces(parent, parts, start, end) {
  let plain = '';
  const flush = () => {
    if (plain) parent.appendChild(document.createTextNode(plain));
    plain = '';
  };
  for (let i = start; i < end; i++) {
    const [shown, why] = parts[i];
    if (why === null) {
      plain += shown;
      continue;
    }
    flush();
    const mark = el('span', 'mark', shown);
    mark.title = why;
    parent.appendChild(mark);
  }
  flush();
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/**
 * `text` as a `span.verbatim`. Options: `ranges` — `[start, end, className, title]` spans to wrap (diff
 * operations or tokens; sorted, not overlapping); `eos` — end with an EOS token, `eosText` its text if known.
 */
export function verbatim(text, {ranges = null, eos = false, eosText = null} = {}) {
  const root = el('span', 'verbatim');
  const parts = pieces(text);
  if (!text && !eos) root.appendChild(titled(el('span', 'mark empty', '∅'), 'empty text'));
  let at = 0;
  for (const [start, end, className, title] of ranges || []) {
    appendPieces(root, parts, at, start);
    const wrap = el('span', className);
    if (title) wrap.title = title;
    appendPieces(wrap, parts, start, end);
    root.appendChild(wrap);
    at = end;
  }
  appendPieces(root, parts, at, parts.length);
  if (eos) {
    const what = eosText === null ? '' : ` (its text: ${JSON.stringify(eosText)})`;
    root.appendChild(titled(el('span', 'eos', 'EOS'), `the completion ended with an end-of-sequence token${what}`));
  }
  return root;
}

function tokensMatch(record) {
  const tokens = record.tokens;
  return Array.isArray(tokens) && tokens.length === (record.completion_ids || []).length &&
    tokens.join('') === record.completion;
}

/**
 * `[text, eosText]`: the completion without the text of its EOS token, and that text, when the record has the
 * tokens' texts to say which characters the EOS is; else the whole completion and null.
 */
export function splitEos(record) {
  if (record.eos === true && tokensMatch(record) && record.tokens.length) {
    const last = record.tokens[record.tokens.length - 1];
    return [record.completion.slice(0, record.completion.length - last.length), last];
  }
  return [record.completion, null];
}

function titled(node, title) {
  node.title = title;
  return node;
}

// Words, runs of whitespace and single punctuation marks: the units a word-level diff compares.
const WORDS = /\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu;

/**
 * A word-level diff of `a` and `b` (longest common subsequence of their words):
 * `{a: ranges, b: ranges}`, each range `[start, end, 'del' | 'ins']` of the words only that side has.
 */
export function wordDiff(a, b) {
  const wa = [...a.matchAll(WORDS)];
  const wb = [...b.matchAll(WORDS)];
  const n = wa.length;
  const m = wb.length;
  if (n * m > 4e6) return {a: a ? [[0, a.length, 'del']] : [], b: b ? [[0, b.length, 'ins']] : []};
  // lcs[i][j]: length of the LCS of wa[i:] and wb[j:], in one flat (n+1)(m+1) array.
  const lcs = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = wa[i][0] === wb[j][0] ? lcs[(i + 1) * (m + 1) + j + 1] + 1
        : Math.max(lcs[(i + 1) * (m + 1) + j], lcs[i * (m + 1) + j + 1]);
    }
  }
  const out = {a: [], b: []};
  const add = (side, match, op) => {
    const ranges = out[side];
    const start = match.index;
    const end = start + match[0].length;
    const last = ranges[ranges.length - 1];
    if (last && last[1] === start) last[1] = end;
    else ranges.push([start, end, op]);
  };
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && wa[i][0] === wb[j][0]) {
      i++;
      j++;
    } else if (j >= m || (i < n && lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1])) {
      add('a', wa[i++], 'del');
    } else {
      add('b', wb[j++], 'ins');
    }
  }
  return out;
}

/** The background colour of a token the model gave log-probability `logprob`: red guessed … green sure. */
export function logprobColour(logprob) {
  if (logprob === null || logprob === undefined) return 'transparent';
  const p = Math.exp(logprob);
  return `hsl(${Math.round(120 * p)}, 75%, 82%)`;
}

function tokenTitle(i, id, logprob) {
  if (logprob === undefined) return `token ${i + 1}: id ${id}, not scored (the context cropped it)`;
  if (logprob === null) return `token ${i + 1}: id ${id}, log-prob not finite`;
  return `token ${i + 1}: id ${id}, log-prob ${logprob.toFixed(3)} (p = ${Math.exp(logprob).toFixed(3)})`;
}

/**
 * The per-token view of a record: its completion with each token coloured by log-prob when the record has the
 * tokens' texts and they make up the completion exactly; else one coloured cell per token, in order, each with
 * its id and log-prob as a tooltip (the viewer has no tokenizer to say which characters a token covers). Where
 * the context cropped the scoring, only the last tokens have a log-prob.
 */
export function tokenView(record) {
  const ids = record.completion_ids || [];
  const scored = record.token_logprobs || [];
  const offset = ids.length - scored.length;
  const logprobOf = (i) => (i >= offset ? scored[i - offset] : undefined);
  if (tokensMatch(record)) {
    const [text, eosText] = splitEos(record);
    const count = eosText === null ? ids.length : ids.length - 1;
    const ranges = [];
    let at = 0;
    for (let i = 0; i < count; i++) {
      ranges.push([at, at + record.tokens[i].length, 'tok', tokenTitle(i, ids[i], logprobOf(i))]);
      at += record.tokens[i].length;
    }
    const shown = verbatim(text, {ranges, eos: eosText !== null, eosText});
    shown.querySelectorAll('.tok').forEach((node, i) => {
      node.style.backgroundColor = logprobColour(logprobOf(i));
    });
    const eos = shown.querySelector('.eos');
    if (eos) {
      eos.style.backgroundColor = logprobColour(logprobOf(count));
      eos.style.color = '#212121';
      eos.title = `${eos.title}; ${tokenTitle(count, ids[count], logprobOf(count))}`;
    }
    return shown;
  }
  const strip = el('span', 'strip');
  ids.forEach((id, i) => {
    const cell = el('span', 'cell');
    cell.style.backgroundColor = logprobColour(logprobOf(i));
    cell.title = tokenTitle(i, id, logprobOf(i));
    strip.appendChild(cell);
  });
  return strip;
}

/** A metric's value as shown beside a sample: 4 significant digits; null (not finite) as "n/a". */
export function formatMetric(value) {
  if (value === null || value === undefined) return 'n/a';
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}
