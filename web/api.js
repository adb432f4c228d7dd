// Calls to the job API: relative to <base href> (the public /api/ path), with the key when one was given
// (in the header the page names: x-functions-key, or Ocp-Apim-Subscription-Key behind API Management); a 401 asks for the key and retries once.
import { askForKey, currentKey, forgetKey, keyHeaderName } from './key.js';

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function apiUrl(path) {
  return new URL(path, document.baseURI).toString();
}

export function keyHeaders() {
  const key = currentKey();
  return key ? { [keyHeaderName()]: key } : {};
}

async function parse(response) {
  const type = response.headers.get('content-type') || '';
  if (type.includes('json')) return response.json();
  return response.text();
}

/** fetch() an API path; resolves {status, headers, body} for 2xx, throws ApiError otherwise. */
export async function api(path, { method = 'GET', json, headers = {}, raw = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, headers: { ...keyHeaders(), ...headers } };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(apiUrl(path), init);
    if (response.status === 401 && attempt === 0) {
      forgetKey();
      await askForKey();
      continue;
    }
    if (!response.ok) {
      throw new ApiError(response.status, await parse(response).catch(() => null));
    }
    return { status: response.status, headers: response.headers, body: raw ? await response.blob() : await parse(response) };
  }
}

let openapi = null;

/** The OpenAPI document (once per page): the kinds for the submit form, and whether job events exist. */
export async function contract() {
  if (!openapi) openapi = api('openapi.json').then((r) => r.body).catch((error) => { openapi = null; throw error; });
  return openapi;
}
