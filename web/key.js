// The function key: asked for when the API answers 401, kept only in this tab's sessionStorage.
const STORAGE_NAME = 'longrun.functionKey';

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
