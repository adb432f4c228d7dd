// A tiny element builder: text always goes in as text (never as HTML), handlers as on<Event> attributes.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else if (name in element && typeof value !== 'string') element[name] = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}` }, status);
}

export function progressBar(progress, label) {
  const percent = progress && typeof progress.percent === 'number' ? progress.percent : 0;
  const text = progress && progress.total ? `${progress.completed}/${progress.total} (${percent}%)` : `${percent}%`;
  return h('span', { class: 'progress' },
    h('progress', { max: '100', value: String(percent), 'aria-label': label || 'Progress' }),
    h('span', { class: 'progress-text' }, text));
}

export function problemText(error) {
  const problem = error && error.problem ? error.problem : {};
  const fields = Array.isArray(problem.errors) ? problem.errors.map((e) => `${e.field}: ${e.message}`) : [];
  return [error.message, ...fields].join(' — ');
}
