// The dashboard: a hash-routed single page over the job API (no framework; views below, one per route).
import { api, ApiError, apiUrl, contract } from './api.js';
import { renderCharts } from './charts.js';
import { h, problemText, progressBar, statusBadge, when } from './dom.js';
import { currentKey, keyQueryName } from './key.js';

const STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'];
const FINISHED = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
const EVENTS_PATH = '/api/jobs/{job_id}/events';
const main = document.getElementById('main');
let stops = []; // what the current view runs in the background (timers, streams, charts): stopped on leaving

function onLeave(stop) {
  stops.push(stop);
}

function every(ms, fn) {
  const timer = setInterval(fn, ms);
  onLeave(() => clearInterval(timer));
}

function newKey() {
  return crypto.randomUUID();
}

function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, error instanceof ApiError ? problemText(error) : String(error.message || error));
}

function show(title, ...content) {
  const heading = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(heading, ...content);
  document.title = `${title} · longrun`;
  heading.focus();
}

async function kinds() {
  const doc = await contract();
  const mapping = doc.components.schemas.JobRequest.discriminator.mapping;
  return Object.keys(mapping);
}

// --- overview: health, queue depths, charts -----------------------------------------------------------

function keyValueTable(caption, values) {
  const rows = Object.entries(values || {}).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v == null ? '—' : String(v))));
  return h('table', { class: 'kv' }, h('caption', {}, caption), h('tbody', {}, rows));
}

async function overview() {
  const health = h('section', { 'aria-labelledby': 'health-title' }, h('h2', { id: 'health-title' }, 'Health'), h('p', {}, 'Loading…'));
  const hours = h('select', { id: 'stats-hours' }, [1, 3, 6, 12, 24].map((n) => h('option', { value: String(n), selected: n === 3 }, `${n} h`)));
  const totals = h('p', { id: 'stats-totals', role: 'status' });
  const charts = h('div', { class: 'charts' });
  const stats = h('section', { 'aria-labelledby': 'stats-title' },
    h('h2', { id: 'stats-title' }, 'Jobs over the last hours'),
    h('label', { for: 'stats-hours' }, 'Window '), hours, totals, charts);
  show('Overview', health, stats);

  async function loadHealth() {
    try {
      const { body } = await api('health');
      health.replaceChildren(h('h2', { id: 'health-title' }, 'Health'),
        h('p', {}, 'Status: ', statusBadge(body.status), ' storage: ', body.storage),
        h('div', { class: 'cards' }, keyValueTable('Queue depths', body.queues), keyValueTable('Jobs by status', body.jobs)));
    } catch (error) {
      health.replaceChildren(h('h2', { id: 'health-title' }, 'Health'), errorBox(error));
    }
  }
  let removeCharts = () => {};
  onLeave(() => removeCharts());
  async function loadStats() {
    const n = Number(hours.value);
    const minutes = n <= 3 ? 1 : n <= 12 ? 5 : 15;
    try {
      const { body } = await api(`stats?hours=${n}&bucket_minutes=${minutes}`);
      const t = body.totals;
      const rate = t.failure_rate == null ? '—' : `${(t.failure_rate * 100).toFixed(1)}%`;
      const mean = t.duration_seconds.mean == null ? '—' : `${t.duration_seconds.mean} s`;
      totals.textContent = `${t.submitted} submitted, ${t.completed} completed, ${t.failed} failed, ${t.cancelled} cancelled; failure rate ${rate}; mean duration ${mean}.`;
      removeCharts();
      removeCharts = renderCharts(charts, body);
    } catch (error) {
      charts.replaceChildren(errorBox(error));
    }
  }
  hours.addEventListener('change', loadStats);
  await Promise.all([loadHealth(), loadStats()]);
  every(10000, loadHealth);
  every(30000, loadStats);
}

// --- jobs: list with filters, live ----------------------------------------------------------------------

/**
 * A table filled one API page at a time: "Load more" follows the continuation, `load(null)` (re)reads the
 * first page. `query(token)` is the API path of a page; `row(item)` its table row.
 */
function pagedTable({ className, caption, columns, query, row, empty }) {
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', { class: className },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    body));
  const message = h('p', { role: 'status' });
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  let continuation = null;
  let pages = 1;
  async function load(token) {
    try {
      const { body: page } = await api(query(token));
      if (!token) body.replaceChildren();
      body.append(...page.items.map(row));
      continuation = page.continuation;
      more.hidden = !continuation;
      message.textContent = body.children.length ? '' : empty;
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  }
  more.addEventListener('click', () => { pages += 1; load(continuation); });
  return { table, message, more, load, onFirstPage: () => pages === 1 };
}

/** The API path of one page of a listing (`path` with its filters, and the continuation of a later page). */
function pageQuery(path, filters, token) {
  const q = new URLSearchParams({ limit: '20', ...filters });
  if (token) q.set('continuation', token);
  return `${path}?${q}`;
}

function jobRow(job) {
  return h('tr', { 'data-job': job.id },
    h('td', { 'data-label': 'Job' }, h('a', { href: `#/jobs/${job.id}` }, job.id.slice(0, 12) + '…')),
    h('td', { 'data-label': 'Kind' }, job.kind),
    h('td', { 'data-label': 'Status' }, statusBadge(job.status)),
    h('td', { 'data-label': 'Progress' }, progressBar(job.progress, `Progress of ${job.id}`)),
    h('td', { 'data-label': 'Created' }, when(job.created_at)),
    h('td', { 'data-label': 'Updated' }, when(job.updated_at)));
}

async function jobList(params) {
  const status = params.get('status') || '';
  const kind = params.get('kind') || '';
  const statusSelect = h('select', { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const kindSelect = h('select', { id: 'filter-kind', name: 'kind' }, h('option', { value: '' }, 'any'));
  kinds().then((names) => kindSelect.append(...names.map((k) => h('option', { value: k, selected: k === kind }, k)))).catch(() => {});
  const applyFilters = () => {
    const query = new URLSearchParams();
    if (statusSelect.value) query.set('status', statusSelect.value);
    if (kindSelect.value) query.set('kind', kindSelect.value);
    location.hash = `#/jobs${query.toString() ? '?' + query : ''}`;
  };
  statusSelect.addEventListener('change', applyFilters);
  kindSelect.addEventListener('change', applyFilters);
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); applyFilters(); } },
    h('label', { for: 'filter-status' }, 'Status'), statusSelect,
    h('label', { for: 'filter-kind' }, 'Kind'), kindSelect);
  const listed = { ...(status && { status }), ...(kind && { kind }) };
  const list = pagedTable({
    className: 'jobs', caption: 'Jobs, newest first',
    columns: ['Job', 'Kind', 'Status', 'Progress', 'Created', 'Updated'],
    query: (token) => pageQuery('jobs', listed, token), row: jobRow, empty: 'No jobs match.',
  });
  show('Jobs', filters, list.message, list.table, list.more);
  await list.load(null);
  // Live status: refresh the first page while no further page was loaded (the rows would shift under the reader).
  every(3000, () => { if (list.onFirstPage() && !document.hidden) list.load(null); });
}

// --- one job: live progress, timeline, result, cancel ---------------------------------------------------

async function download(job, format) {
  const path = `jobs/${job.id}/result${format ? `?format=${encodeURIComponent(format)}` : ''}`;
  const { body } = await api(path, { raw: true });
  const url = URL.createObjectURL(body);
  const link = h('a', { href: url, download: `${job.id}-result.${format || 'json'}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function jobPage(id) {
  const summary = h('dl', { class: 'summary' });
  const actions = h('div', { class: 'actions' });
  const outcome = h('div');
  const timeline = h('ol', { class: 'timeline', 'aria-label': 'Timeline' });
  const live = h('p', { class: 'muted', id: 'live-mode' });
  show(`Job ${id}`, live, summary, actions, outcome, h('h2', {}, 'Timeline'), timeline);
  const doc = await contract().catch(() => null);
  const resultParams = doc?.paths?.['/api/jobs/{job_id}/result']?.parameters || [];
  const formats = resultParams.find((p) => p.name === 'format')?.['x-formats-by-kind'] || {};

  function note(label, at) {
    timeline.append(h('li', {}, h('time', { datetime: at }, when(at)), ' ', label));
  }

  let last = null;
  function render(job) {
    if (!last) {
      note('Submitted', job.created_at);
      if (job.status !== 'PENDING') note(`Status ${job.status}`, job.updated_at);
    } else if (last.status !== job.status) {
      note(`Status ${job.status}`, job.updated_at);
    } else if (job.phase && job.phase !== last.phase) {
      note(`Phase ${job.phase}`, job.updated_at); // events carry the phase where the server has it
    } else if (job.progress.completed !== last.progress.completed) {
      note(`Progress ${job.progress.completed}/${job.progress.total}`, job.updated_at);
    }
    if (job.error && !(last && last.error)) {
      note(`Error ${job.error.type} after ${job.error.attempts} attempt(s)`, job.updated_at);
    }
    last = job;
    const rows = [
      ['Kind', job.kind], ['Status', statusBadge(job.status)], ['Progress', progressBar(job.progress)],
      ['Created', when(job.created_at)], ['Updated', when(job.updated_at)],
    ];
    if (job.deadline_at) rows.push(['Deadline', when(job.deadline_at)]);
    if (job.phase) rows.splice(2, 0, ['Phase', job.phase]);
    summary.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    actions.replaceChildren();
    if (!FINISHED.has(job.status)) {
      actions.append(h('button', { type: 'button', onclick: cancel }, 'Cancel job'));
    }
    if (job.status === 'COMPLETED') {
      actions.append(h('button', { type: 'button', class: 'primary', onclick: () => download(job).catch(fail) }, 'Download result (JSON)'));
      for (const format of (formats && formats[job.kind]) || []) {
        if (format !== 'json') actions.append(h('button', { type: 'button', onclick: () => download(job, format).catch(fail) }, `Download ${format.toUpperCase()}`));
      }
      outcome.replaceChildren(h('h2', {}, 'Result summary'), h('pre', { class: 'json', tabindex: '0' }, JSON.stringify(job.result, null, 2)));
    } else if (job.status === 'FAILED' && job.error) {
      outcome.replaceChildren(h('h2', {}, 'Error'), h('p', { class: 'error', role: 'alert' },
        `${job.error.type}: ${job.error.message} (attempts: ${job.error.attempts})`));
    } else {
      outcome.replaceChildren();
    }
  }
  function fail(error) {
    outcome.replaceChildren(errorBox(error));
  }
  async function cancel() {
    try {
      const { body } = await api(`jobs/${id}`, { method: 'DELETE' });
      note('Cancel requested', new Date().toISOString());
      render(body);
    } catch (error) {
      fail(error);
    }
  }

  let timer = null;
  let stopped = false;
  onLeave(() => { stopped = true; clearTimeout(timer); });
  // `follow`: keep polling with Retry-After while the job runs (off while an event stream follows it).
  async function poll(follow = true) {
    try {
      const response = await api(`jobs/${id}`);
      render(response.body);
      if (response.status === 202 && !stopped && follow) {
        const seconds = Number(response.headers.get('retry-after')) || 2;
        timer = setTimeout(poll, Math.min(seconds, 30) * 1000);
      }
    } catch (error) {
      fail(error);
    }
  }
  const hasEvents = doc && doc.paths && doc.paths[EVENTS_PATH];
  if (!hasEvents) {
    live.textContent = 'Live: polling (Retry-After).';
    await poll();
    return;
  }
  // Server-sent events where the server has them: EventSource cannot send headers, so the key goes in the
  // query (?code=, or ?subscription-key= behind API Management).
  live.textContent = 'Live: server-sent events.';
  await poll(false);
  if (!last || FINISHED.has(last.status)) return;
  const url = new URL(apiUrl(`jobs/${id}/events`));
  const key = currentKey();
  if (key) url.searchParams.set(keyQueryName(), key);
  const source = new EventSource(url);
  onLeave(() => source.close());
  // `status` and `progress` events carry {id, status, phase, progress, updated_at}; the terminal event
  // (`completed`, `failed`, `cancelled`) the whole job resource. Anything else: read the job itself.
  const onEvent = async (event) => {
    let data = null;
    try { data = JSON.parse(event.data); } catch { data = null; }
    if (data && data.id === id && data.status && data.progress) render({ ...last, ...data });
    else await poll(false);
    if (last && FINISHED.has(last.status)) source.close();
  };
  for (const name of ['message', 'status', 'progress', 'completed', 'failed', 'cancelled']) source.addEventListener(name, onEvent);
  // EventSource reconnects by itself after a stream ends; it gives up (CLOSED) on a refused stream: poll then.
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED && !stopped && last && !FINISHED.has(last.status)) {
      live.textContent = 'Live: polling (Retry-After).';
      poll();
    }
  });
}

// --- submit: JSON input or a file through /api/uploads ---------------------------------------------------

const EXAMPLES = {
  simulate: { options: { chunks: 4, chunk_seconds: 1 } },
  'vector-normalize': { input: { vector_data: [[3, 4], [1, 0]] } },
  'csv-report': { options: { group_by: 'region', metrics: ['amount'] } },
};

function contentTypeOf(file) {
  const name = file.name.toLowerCase();
  if (name.endsWith('.csv')) return 'text/csv';
  if (name.endsWith('.ndjson') || name.endsWith('.jsonl')) return 'application/x-ndjson';
  if (name.endsWith('.json')) return 'application/json';
  return file.type || 'application/octet-stream';
}

function putWithProgress(upload, file, contentType, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(upload.method || 'PUT', upload.upload_url);
    for (const [name, value] of Object.entries(upload.headers || {})) xhr.setRequestHeader(name, value);
    if (!upload.headers || !Object.keys(upload.headers).some((n) => n.toLowerCase() === 'content-type')) {
      xhr.setRequestHeader('Content-Type', contentType);
    }
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); });
    xhr.addEventListener('load', () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(new Error(`the upload failed: HTTP ${xhr.status}`))));
    xhr.addEventListener('error', () => reject(new Error('the upload failed: storage did not answer (CORS?)')));
    xhr.send(file);
  });
}

function parseJsonField(textarea, what) {
  const text = textarea.value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}

async function submitPage() {
  const kindSelect = h('select', { id: 'submit-kind', name: 'kind', required: true });
  const input = h('textarea', { id: 'submit-input', name: 'input', rows: '5', spellcheck: 'false', 'aria-describedby': 'input-help' });
  const options = h('textarea', { id: 'submit-options', name: 'options', rows: '4', spellcheck: 'false' });
  const file = h('input', { id: 'submit-file', name: 'file', type: 'file', accept: '.csv,.ndjson,.jsonl,.json' });
  const deadline = h('input', { id: 'submit-deadline', name: 'deadline_seconds', type: 'number', min: '1', inputmode: 'numeric' });
  const progress = h('progress', { id: 'upload-progress', max: '100', value: '0', hidden: true, 'aria-label': 'Upload progress' });
  const progressText = h('span', { id: 'upload-progress-text' });
  const status = h('p', { id: 'submit-status', role: 'status' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Submit job');
  const fillExample = () => {
    const example = EXAMPLES[kindSelect.value] || {};
    input.value = example.input ? JSON.stringify(example.input) : '';
    options.value = example.options ? JSON.stringify(example.options) : '';
  };
  kindSelect.addEventListener('change', fillExample);
  const form = h('form', { class: 'submit', novalidate: true },
    h('label', { for: 'submit-kind' }, 'Kind'), kindSelect,
    h('label', { for: 'submit-input' }, 'Input (JSON)'), input,
    h('p', { id: 'input-help', class: 'muted' }, 'Inline input for kinds that read JSON; or choose a file below (uploaded to storage first).'),
    h('label', { for: 'submit-file' }, 'Input file (CSV, NDJSON or JSON)'), file,
    h('label', { for: 'submit-options' }, 'Options (JSON object)'), options,
    h('label', { for: 'submit-deadline' }, 'Deadline in seconds (optional)'), deadline,
    h('div', { class: 'actions' }, button, progress, progressText), status);
  show('Submit a job', form);
  try {
    for (const name of await kinds()) kindSelect.append(h('option', { value: name }, name));
    fillExample();
  } catch (error) {
    status.replaceChildren(errorBox(error));
  }
  const idempotencyKey = newKey(); // one per form: a double submit names the same job
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    status.textContent = '';
    try {
      const envelope = { kind: kindSelect.value };
      const opts = parseJsonField(options, 'Options');
      if (opts !== undefined) envelope.options = opts;
      if (deadline.value) envelope.deadline_seconds = Number(deadline.value);
      const chosen = file.files && file.files[0];
      if (chosen) {
        const contentType = contentTypeOf(chosen);
        status.textContent = 'Uploading…';
        const { body: upload } = await api('uploads', { method: 'POST', json: { content_type: contentType } });
        progress.hidden = false;
        await putWithProgress(upload, chosen, contentType, (loaded, total) => {
          progress.value = Math.round((100 * loaded) / total);
          progressText.textContent = `${Math.round((100 * loaded) / total)}% of ${total} bytes uploaded`;
        });
        progress.value = 100;
        progressText.textContent = `Uploaded ${chosen.size} bytes`;
        envelope.input_ref = upload.input_ref;
      } else {
        const inline = parseJsonField(input, 'Input');
        if (inline !== undefined) envelope.input = inline;
      }
      const { body: job } = await api('jobs', { method: 'POST', json: envelope, headers: { 'Idempotency-Key': idempotencyKey } });
      status.textContent = `Submitted job ${job.id}.`;
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      status.replaceChildren(errorBox(error));
      button.disabled = false;
    }
  });
}

// --- dead letters: list and replay ------------------------------------------------------------------------

async function deadLetters() {
  const list = pagedTable({
    className: 'dead-letters', caption: 'Dead letters, newest first',
    columns: ['Recorded', 'Source', 'Kind', 'Error', 'Attempts', 'Job', ''],
    query: (token) => pageQuery('dead-letters', {}, token), row, empty: 'No dead letters.',
  });
  const { message } = list;
  show('Dead letters', message, list.table, list.more);
  async function replay(record, button) {
    button.disabled = true;
    try {
      const { body: job } = await api(`dead-letters/${encodeURIComponent(record.id)}/replay`, { method: 'POST', headers: { 'Idempotency-Key': `replay-${record.id}-${newKey()}` } });
      message.textContent = `Replayed as job ${job.id}.`;
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      message.replaceChildren(errorBox(error));
      button.disabled = false;
    }
  }
  function row(record) {
    const button = h('button', { type: 'button', disabled: record.source !== 'job', title: record.source === 'job' ? 'Resubmit as a new job' : 'Poison messages cannot be replayed' }, 'Replay');
    button.addEventListener('click', () => replay(record, button));
    return h('tr', { 'data-dead-letter': record.id },
      h('td', { 'data-label': 'Recorded' }, when(record.created_at)), h('td', { 'data-label': 'Source' }, record.source),
      h('td', { 'data-label': 'Kind' }, record.kind || '—'),
      h('td', { 'data-label': 'Error' }, h('strong', {}, record.error_type), ' ', record.reason),
      h('td', { 'data-label': 'Attempts' }, String(record.attempts ?? '—')),
      h('td', { 'data-label': 'Job' }, record.job_id ? h('a', { href: `#/jobs/${record.job_id}` }, record.job_id.slice(0, 12) + '…') : '—'),
      h('td', {}, button));
  }
  await list.load(null);
}

// --- routing ----------------------------------------------------------------------------------------------

function highlightNav(path) {
  for (const link of document.querySelectorAll('nav a[href^="#/"]')) {
    const target = link.getAttribute('href').slice(1);
    const current = target === '/' ? path === '/' : path.startsWith(target);
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function route() {
  for (const stop of stops) stop();
  stops = [];
  const [path, queryString] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(queryString || '');
  highlightNav(path);
  const job = path.match(/^\/jobs\/([0-9a-f]{32})$/);
  try {
    if (job) await jobPage(job[1]);
    else if (path === '/jobs') await jobList(params);
    else if (path === '/submit') await submitPage();
    else if (path === '/dead-letters') await deadLetters();
    else await overview();
  } catch (error) {
    show('Something went wrong', errorBox(error));
  }
}

window.addEventListener('hashchange', route);
route();
