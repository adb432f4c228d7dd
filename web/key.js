// The key: asked for when the API answers 401, kept only in this tab's sessionStorage, sent in the header
// the app names in <meta name="longrun-key-header"> (API_KEY_HEADER: x-functions-key, or the gateway's
// Ocp-Apim-Subscription-Key behind API Management).
const STORAGE_NAME = 'longrun.functionKey';
const KEY_HEADERS = ['x-functions-key', 'Ocp-Apim-Subscription-Key'];

// EventSource cannot send headers: the key goes in the query parameter each side reads instead (the
// Functions host's ?code=, API Management's default ?subscription-key=).
const KEY_QUERY = { 'x-functions-key': 'code', 'Ocp-Apim-Subscription-Key': 'subscription-key' };

/** The query parameter that carries the key where no header can be sent (EventSource). */
export function keyQueryName() {
  return KEY_QUERY[keyHeaderName()];
}

/** The header name the key goes in; x-functions-key when the page names none it knows. */
export function keyHeaderName() {
  const meta = document.querySelector('meta[name="longrun-key-header"]');
  const name = meta ? meta.content : '';
  return KEY_HEADERS.includes(name) ? name : KEY_HEADERS[0];
}

export function currentKey() {
  return sessionStorage.getItem(STORAGE_NAME) || '';
}

export function forgetKey() {
  sessionStorage.removeItem(STORAGE_NAME);
}

let pending = null;

/** Show the key dialog (once, however many requests are waiting) and resolve with the key typed. */
export function askForKey() {
  if (pending) return pending;
  const dialog = document.getElementById('key-dialog');
  const form = document.getElementById('key-form');
  const input = document.getElementById('key-input');
  const header = document.getElementById('key-header');
  if (header) header.textContent = keyHeaderName();
  pending = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(STORAGE_NAME, key);
      input.value = '';
      form.removeEventListener('submit', done);
      dialog.close();
      pending = null;
      resolve(key);
    };
    form.addEventListener('submit', done);
    // Escape would close the dialog without a key: keep it open, the page cannot work without one.
    dialog.addEventListener('cancel', (event) => event.preventDefault(), { once: true });
    dialog.showModal();
    input.focus();
  });
  return pending;
}
