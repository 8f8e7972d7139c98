// The Run-now form, generated from the job's params JSON Schema: one input per top-level property for the simple types,
// anything else edited as JSON; then the trigger options. The server's validation is the one that counts.
import { ApiError, api } from './api.js';
import { h } from './dom.js';
import { runLink } from './views.js';

/** The input for one top-level property of the params schema. */
function paramInput(id, name, prop, required) {
  if (prop.type === 'boolean') return h('input', { type: 'checkbox', id, name, checked: prop.default === true });
  if (Array.isArray(prop.enum)) {
    return h(
      'select',
      { id, name },
      required ? null : h('option', { value: '' }, '(unset)'),
      prop.enum.map((v) => h('option', { value: JSON.stringify(v), selected: v === prop.default }, String(v))),
    );
  }
  if (prop.type === 'integer' || prop.type === 'number') {
    const step = prop.type === 'integer' ? '1' : 'any';
    return h('input', { type: 'number', id, name, step, min: prop.minimum, max: prop.maximum, value: prop.default });
  }
  if (prop.type === 'string') return h('input', { type: 'text', id, name, value: prop.default, placeholder: prop.format || '' });
  const text = prop.default === undefined ? '' : JSON.stringify(prop.default);
  return h('textarea', { id, name, rows: 2, class: 'json', placeholder: 'JSON' }, text);
}

/** One field per property of an object schema, or null: the data is then edited whole, as JSON. */
function paramFields(job) {
  const schema = job.params;
  const props = schema && schema.type === 'object' && schema.properties ? schema.properties : null;
  if (!props) return null;
  return Object.entries(props).map(([name, prop]) => {
    const input = paramInput(`f-${job.name}-${name}`, name, prop, (schema.required || []).includes(name));
    return { name, prop, input };
  });
}

/** The data the fields say (an empty field is left out); a JSON field that does not parse throws. */
function collect(fields, raw) {
  if (raw) return JSON.parse(raw.value || '{}');
  const data = {};
  for (const { name, prop, input } of fields) {
    if (prop.type === 'boolean') data[name] = input.checked;
    else if (input.value === '') continue;
    else if (input.tagName === 'SELECT') data[name] = JSON.parse(input.value);
    else if (prop.type === 'integer' || prop.type === 'number') data[name] = Number(input.value);
    else if (prop.type === 'string') data[name] = input.value;
    else data[name] = JSON.parse(input.value);
  }
  return data;
}

/** Trigger options: sent only when filled; the server checks them (delay and at together, a time in the past, ...). */
function optionInputs(job) {
  const id = (name) => `o-${job.name}-${name}`;
  return {
    at: h('input', { type: 'datetime-local', id: id('at'), name: 'at', step: 1 }),
    delay: h('input', { type: 'text', id: id('delay'), name: 'delay', placeholder: '30s, 5m, 2h' }),
    priority: h('input', { type: 'number', id: id('priority'), name: 'priority', min: 1, step: 1, placeholder: '1 runs first' }),
    key: h('input', { type: 'text', id: id('key'), name: 'key', maxlength: 200, placeholder: 'e.g. import-2026-11-05' }),
  };
}

function optionValues(opt) {
  const out = {};
  if (opt.at.value) {
    // datetime-local is the browser's local time, without a zone: send it as an ISO instant.
    const at = new Date(opt.at.value);
    if (Number.isNaN(at.getTime())) throw new Error(`run at: "${opt.at.value}" is not a time`);
    out.at = at.toISOString();
  }
  const delay = opt.delay.value.trim();
  if (delay) out.delay = /^\d+$/.test(delay) ? Number(delay) : delay;
  if (opt.priority.value !== '') out.priority = Number(opt.priority.value);
  if (opt.key.value !== '') out.key = opt.key.value;
  return out;
}

function label(input, text, hint) {
  return h('label', { for: input.id }, h('span', {}, text), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

function optionsBox(opt) {
  return h(
    'details',
    { class: 'run-options' },
    h('summary', {}, 'Options'),
    label(opt.at, 'run at', 'your local time; or a delay, not both'),
    label(opt.delay, 'delay', 'run later: 30s, 5m, 2h'),
    label(opt.priority, 'priority', '1 or more; lower runs first'),
    label(opt.key, 'idempotency key', 'the same key while its run is kept returns that run'),
  );
}

/** Where the form says what happened: the reasons of a refusal as a list, other answers as one line. */
function feedback() {
  const errors = h('ul', { class: 'errors', role: 'alert' });
  const answer = h('p', { class: 'answer', role: 'status', hidden: true });
  return {
    errors,
    answer,
    clear() {
      errors.replaceChildren();
      answer.hidden = true;
    },
    error(text) {
      errors.append(h('li', {}, text));
    },
    say(cls, ...nodes) {
      answer.className = `answer ${cls}`;
      answer.replaceChildren(...nodes);
      answer.hidden = false;
    },
  };
}

/** The form's data and options, or null when they cannot be sent (the reason is shown). */
function request(fields, raw, opt, fb) {
  let data;
  try {
    data = collect(fields, raw);
  } catch (err) {
    fb.error(`not valid JSON: ${err.message}`);
    return null;
  }
  try {
    return { data, extra: optionValues(opt) };
  } catch (err) {
    fb.error(err.message);
    return null;
  }
}

/** POST the run; show the server's reasons when it refuses. */
async function trigger(job, { data, extra }, fb, onDone) {
  try {
    const { runId, existing } = await api(`jobs/${encodeURIComponent(job.name)}/runs`, {
      method: 'POST',
      body: JSON.stringify({ data, trigger: 'manual', ...extra }),
    });
    // The same idempotency key while its run is kept: that run, not a new one.
    if (existing) fb.say('existing', 'a run with this key already exists: ', runLink(runId));
    else onDone(runId);
  } catch (err) {
    const body = err instanceof ApiError ? err.body : {};
    if (err instanceof ApiError && err.status === 409 && body.blocking) {
      fb.say('refused', `${err.message} `, runLink(body.blocking, `open ${body.blocking}`));
    } else if (body.issues) for (const issue of body.issues) fb.error(`${issue.path || '/'} ${issue.message}`);
    else fb.error(err.message);
  }
}

/** The Run-now form of a job; `onDone(runId)` after a new run was triggered. */
export function paramsForm(job, onDone) {
  const fields = paramFields(job);
  const raw = fields ? null : h('textarea', { name: 'data', rows: 4, class: 'json' }, '{}');
  const opt = optionInputs(job);
  const fb = feedback();
  const onsubmit = async (event) => {
    event.preventDefault();
    fb.clear();
    const req = request(fields, raw, opt, fb);
    if (req) await trigger(job, req, fb, onDone);
  };
  return h(
    'form',
    // novalidate: the server's validation is the one that counts: show its reasons, not the browser's
    { class: 'run-form', novalidate: true, 'data-job': job.name, onsubmit },
    (fields ?? []).map(({ name, prop, input }) => label(input, name, prop.description)),
    raw ? h('label', {}, h('span', {}, 'data (JSON)'), raw) : null,
    optionsBox(opt),
    h('button', { type: 'submit', class: 'primary' }, `Run ${job.name} now`),
    fb.errors,
    fb.answer,
  );
}
