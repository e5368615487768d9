// What the test clients share: a recording fetch, an in-memory OAuth
// client provider for the TypeScript SDK, and a user's browser that signs
// in and consents through the Auth Provider's forms.
import { randomUUID } from 'node:crypto';

// Every request the client makes, in order, without credentials.
export const requests = [];
export const recordingFetch = async (input, init) => {
  const response = await fetch(input, init);
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  requests.push({ method: init?.method ?? 'GET', url: url.origin + url.pathname, status: response.status });
  return response;
};

export class MemoryProvider {
  constructor(redirect) {
    this.redirect = redirect;
    this.information = undefined;
    this.savedTokens = undefined;
    this.verifier = undefined;
    this.authorizationUrl = undefined;
    this.sentState = randomUUID();
  }
  state() { return this.sentState; }
  get redirectUrl() { return this.redirect; }
  get clientMetadata() {
    return {
      client_name: 'mcpbroker oauth-flow test client',
      redirect_uris: [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() { return this.information; }
  saveClientInformation(information) { this.information = information; }
  tokens() { return this.savedTokens; }
  saveTokens(tokens) { this.savedTokens = tokens; }
  redirectToAuthorization(url) { this.authorizationUrl = url; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  invalidateCredentials(scope) {
    if (scope === 'tokens' || scope === 'all') this.savedTokens = undefined;
    if (scope === 'all') this.information = undefined;
  }
}

// A browser's cookie jar, reduced to what one origin needs.
const cookies = new Map();
function remember(response) {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(';');
    const at = pair.indexOf('=');
    cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
  }
}
function cookieHeader() {
  return [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
}

function decodeEntities(s) {
  return s.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function attribute(tag, name) {
  const match = tag.match(new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)')`, 'i'));
  return match ? decodeEntities(match[2] ?? match[3]) : undefined;
}

// The first form of a page: its action and its hidden fields.
function parseForm(html, pageUrl) {
  const form = html.match(/<form\b[^>]*>/i);
  if (!form) throw new Error(`no form on ${pageUrl}: ${html.slice(0, 300)}`);
  const method = (attribute(form[0], 'method') ?? 'GET').toUpperCase();
  const action = new URL(attribute(form[0], 'action') ?? pageUrl, pageUrl);
  const fields = new URLSearchParams();
  for (const input of html.matchAll(/<input\b[^>]*>/gi)) {
    const type = (attribute(input[0], 'type') ?? 'text').toLowerCase();
    const name = attribute(input[0], 'name');
    if (type === 'hidden' && name) fields.append(name, attribute(input[0], 'value') ?? '');
  }
  return { method, action, fields };
}

async function visit(url, init = {}) {
  const response = await fetch(url, {
    ...init,
    redirect: 'manual',
    headers: { ...(init.headers ?? {}), cookie: cookieHeader() },
  });
  remember(response);
  requests.push({ method: init.method ?? 'GET', url: new URL(url).origin + new URL(url).pathname, status: response.status });
  return response;
}

// Signs in and consents as a user would (options: username, password,
// consent, redirect), and returns the redirect back to the client.
export async function authorize(authorizationUrl, options) {
  let response = await visit(authorizationUrl);
  let pageUrl = authorizationUrl;
  for (let step = 0; step < 5; step++) {
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location'), pageUrl);
      if (location.href.startsWith(options.redirect)) return location;
      pageUrl = location;
      response = await visit(location);
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) throw new Error(`authorization page answered ${response.status}: ${html.slice(0, 300)}`);
    const { method, action, fields } = parseForm(html, pageUrl);
    if (/name\s*=\s*["']password["']/i.test(html)) {
      fields.set('username', options.username);
      fields.set('password', options.password);
    } else if (/name\s*=\s*["']consent["']/i.test(html)) {
      fields.set('consent', options.consent);
    } else {
      throw new Error(`unexpected page at ${pageUrl}: ${html.slice(0, 300)}`);
    }
    pageUrl = action;
    response = await visit(action, {
      method,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: fields.toString(),
    });
  }
  throw new Error('authorization did not return to the client');
}
