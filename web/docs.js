// Swagger UI (swagger-ui-dist, vendored) over /api/openapi.json; "Try it out" sends the function key
// the user typed (sessionStorage only), the same one the dashboard uses.
import { api } from './api.js';
import { currentKey, keyHeaderName } from './key.js';

const status = document.getElementById('docs-status');

async function start() {
  let spec;
  try {
    spec = (await api('openapi.json')).body; // asks for the key on 401
  } catch (error) {
    status.textContent = `The OpenAPI document could not be read: ${error.message}`;
    status.classList.add('error');
    return;
  }
  status.textContent = '';
  status.hidden = true;
  globalThis.SwaggerUIBundle({
    spec,
    dom_id: '#swagger-ui',
    deepLinking: false,
    validatorUrl: null, // never call the public validator service
    requestInterceptor: (request) => {
      const key = currentKey();
      if (key) request.headers[keyHeaderName()] = key;
      return request;
    },
  });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
