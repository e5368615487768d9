// A real OAuth 2.1 authorization server for mcpbroker tests: panva's
// oidc-provider (9.x) on loopback: client_credentials, and with
// --login-redirect also OpenID Connect sign-in (authorization code flow)
// for one relying party.
//
//   node idp.mjs [--port N] [--resource URL]... [--clients JSON]
//                [--scopes "a b c"] [--alg ES256|RS256] [--ttl SECONDS]
//                [--format jwt|opaque] [--login-redirect URL]...
//                [--config JSON]
//
// --port N         listen on 127.0.0.1:N (0 or absent: any free port); the
//                  issuer is http://127.0.0.1:N.
// --resource URL   a resource (RFC 8707) tokens may be requested for, e.g.
//                  the broker's http://127.0.0.1:PORT/mcp; repeatable or a
//                  comma list. "*" in a value matches any characters, and
//                  no --resource at all means "*" (any resource). A token
//                  requested with resource=URL has aud=URL.
// --clients JSON   [{"client_id","client_secret","groups":[...],"scope":"..",
//                  "introspector":true}...]; replaces the default clients:
//                    agent-1/agent-1-secret  groups [warehouse-ops]
//                    agent-2/agent-2-secret  groups [customer-support]
//                    broker/broker-secret    introspector (may introspect
//                                            and revoke any token)
// --scopes LIST    scopes a resource grants (default
//                  "mcp:tools ledger:read ledger:write pii:read").
// --alg ALG        access token signing algorithm, ES256 (default) or RS256.
// --ttl SECONDS    access token lifetime (default 300).
// --format F       access token format for resource tokens: jwt (default)
//                  or opaque.
// --login-redirect URL
//                  a redirect URI of the relying party broker-login
//                  (secret broker-login-secret, client_secret_basic,
//                  authorization code flow, PKCE S256, scopes openid
//                  profile email); repeatable or a comma list. Without it
//                  there is no such client and no sign-in.
// --config JSON    any of the above as one object: {"port", "resources",
//                  "clients", "scopes", "alg", "ttl", "format",
//                  "loginRedirects"}; flags after it override it.
//
// Sign-in: /authorize for broker-login shows a login form (POST to
// /interaction/<uid>/login with fields login and password) that accepts
// one user, carol / carol-password: sub carol-7d1f, preferred_username
// carol, name Carol Example, email carol@example.com, groups [finance]
// (the groups claim comes with the profile scope). A wrong password shows
// the form again. Consent is implied for broker-login (a first-party
// client). ID tokens are RS256 and carry the profile and email claims.
//
// Prints "IDP READY <issuer>" on stdout once listening; everything else goes
// to stderr. SIGTERM/SIGINT exit 0.
//
// oidc-provider refuses to introspect or revoke JWT access tokens
// ("Structured JWT Tokens cannot be introspected") and does not even store
// them. Here a JWT format customizer stores each JWT access token's state
// as if it were an opaque token (under a secret prefix + its jti), and a
// small middleware verifies a JWT presented to the introspection or
// revocation endpoint against this IdP's own keys and hands oidc-provider
// that storage key instead, so both endpoints work for JWT access tokens
// (a JWT that does not verify is introspected as inactive).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

// Keep stdout for the READY line: oidc-provider prints its development
// notices with console.info.
console.info = console.error;
console.log = console.error;
console.warn = console.error;

const DEFAULT_SCOPES = 'mcp:tools ledger:read ledger:write pii:read';
// The relying party and the one user of OpenID Connect sign-in.
const LOGIN_CLIENT = { client_id: 'broker-login', client_secret: 'broker-login-secret' };
const LOGIN_USER = {
  login: 'carol',
  password: 'carol-password',
  sub: 'carol-7d1f',
  claims: {
    preferred_username: 'carol',
    name: 'Carol Example',
    email: 'carol@example.com',
    email_verified: true,
    groups: ['finance'],
  },
};
const DEFAULT_CLIENTS = [
  { client_id: 'agent-1', client_secret: 'agent-1-secret', groups: ['warehouse-ops'] },
  { client_id: 'agent-2', client_secret: 'agent-2-secret', groups: ['customer-support'] },
  { client_id: 'broker', client_secret: 'broker-secret', groups: [], introspector: true },
];

function fail(msg) {
  console.error(`idp: ${msg}`);
  process.exit(2);
}

function parseJSON(flag, text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    return fail(`${flag}: ${err.message}`);
  }
}

function parseArgs(argv) {
  const opts = {};
  const resources = [];
  const loginRedirects = [];
  for (let i = 0; i < argv.length; i += 1) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      i += 1;
      if (i >= argv.length) fail(`${arg} needs a value`);
      return argv[i];
    };
    switch (arg) {
      case '--port': opts.port = Number(next()); break;
      case '--resource': resources.push(...next().split(',')); break;
      case '--clients': opts.clients = parseJSON(arg, next()); break;
      case '--scopes': opts.scopes = next(); break;
      case '--alg': opts.alg = next(); break;
      case '--ttl': opts.ttl = Number(next()); break;
      case '--format': opts.format = next(); break;
      case '--login-redirect': loginRedirects.push(...next().split(',')); break;
      case '--config': {
        const cfg = parseJSON(arg, next());
        if (cfg.resources) resources.push(...[].concat(cfg.resources));
        if (cfg.loginRedirects) loginRedirects.push(...[].concat(cfg.loginRedirects));
        delete cfg.resources;
        delete cfg.loginRedirects;
        Object.assign(opts, cfg);
        break;
      }
      default: fail(`unknown argument ${arg}`);
    }
  }
  opts.resources = resources.map((r) => r.trim()).filter(Boolean);
  opts.loginRedirects = loginRedirects.map((r) => r.trim()).filter(Boolean);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const port = opts.port ?? 0;
const alg = opts.alg ?? 'ES256';
const ttl = opts.ttl ?? 300;
const format = opts.format ?? 'jwt';
const scopes = Array.isArray(opts.scopes) ? opts.scopes.join(' ') : (opts.scopes ?? DEFAULT_SCOPES);
const clientsConfig = opts.clients ?? DEFAULT_CLIENTS;
const resourcePatterns = (opts.resources.length ? opts.resources : ['*']).map((r) => {
  const escaped = r.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${escaped}$`);
});
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${opts.port}`);
if (!['ES256', 'RS256'].includes(alg)) fail(`bad --alg ${alg}`);
if (!Number.isInteger(ttl) || ttl < 1) fail(`bad --ttl ${opts.ttl}`);
if (!['jwt', 'opaque'].includes(format)) fail(`bad --format ${format}`);
if (!Array.isArray(clientsConfig)) fail('--clients must be a JSON array');

const groupsByClient = new Map();
const introspectors = new Set();
const allScopes = new Set(scopes.split(' ').filter(Boolean));
const clients = clientsConfig.map((c) => {
  const {
    groups = [], introspector = false, ...metadata
  } = c;
  if (!metadata.client_id || !metadata.client_secret) fail('every client needs client_id and client_secret');
  groupsByClient.set(metadata.client_id, groups);
  if (introspector) introspectors.add(metadata.client_id);
  for (const s of (metadata.scope ?? '').split(' ').filter(Boolean)) allScopes.add(s);
  return {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic', // client_secret_post works too
    ...metadata,
  };
});
const login = opts.loginRedirects.length > 0;
if (login) {
  if (clients.some((c) => c.client_id === LOGIN_CLIENT.client_id)) fail(`--clients must not name ${LOGIN_CLIENT.client_id}`);
  clients.push({
    ...LOGIN_CLIENT,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: opts.loginRedirects,
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    scope: 'openid profile email',
  });
}

async function generateKey(keyAlg) {
  const { privateKey } = await jose.generateKeyPair(keyAlg, { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  jwk.alg = keyAlg;
  jwk.use = 'sig';
  jwk.kid = await jose.calculateJwkThumbprint(jwk);
  return jwk;
}
// The first key of an algorithm is the one oidc-provider signs with.
const keys = await Promise.all([generateKey('ES256'), generateKey('RS256')]);
const publicJWKS = jose.createLocalJWKSet({
  keys: keys.map(({
    d, p, q, dp, dq, qi, ...pub
  }) => pub),
});

// JWT access token state lives under storageKey(jti) (see formats below).
const storagePrefix = crypto.randomBytes(16).toString('base64url');
const storageKey = (jti) => `${storagePrefix}.${jti}`;

const server = http.createServer();
server.listen(port, '127.0.0.1');
await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

// Sign-in settings, only with --login-redirect.
const loginConfiguration = !login ? {} : {
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  // The ID token carries the scopes' claims, not only the userinfo endpoint.
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => (id !== LOGIN_USER.sub ? undefined : {
    accountId: id,
    claims: async () => ({ sub: id, ...LOGIN_USER.claims }),
  }),
  // Consent is implied for the relying party: its first grant is made
  // here instead of asking.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    if (ctx.oidc.client.clientId !== LOGIN_CLIENT.client_id || !ctx.oidc.session.accountId) return undefined;
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    await grant.save();
    return grant;
  },
};

const provider = new Provider(issuer, {
  ...loginConfiguration,
  clients,
  jwks: { keys },
  scopes: [...allScopes],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Introspectors (the broker) see every token, clients their own.
      allowedPolicy: async (ctx, client, token) => introspectors.has(client.clientId) || client.clientId === token.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => introspectors.has(client.clientId) || client.clientId === token.clientId,
    },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (!resourcePatterns.some((re) => re.test(resourceIndicator))) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return {
          scope: [...allScopes].join(' '),
          audience: resourceIndicator,
          accessTokenTTL: ttl,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg } } } : {}),
        };
      },
    },
  },
  ttl: { ClientCredentials: ttl, AccessToken: ttl },
  formats: {
    customizers: {
      // A JWT access token is not stored by oidc-provider; store its state
      // as an opaque token would be, under a key no client can present.
      jwt: async (ctx, token, jwt) => {
        const stored = {};
        for (const k of token.constructor.IN_PAYLOAD) {
          if (token[k] !== undefined) stored[k] = token[k];
        }
        Object.assign(stored, {
          jti: storageKey(jwt.payload.jti), kind: token.kind, iat: jwt.payload.iat, exp: jwt.payload.exp,
        });
        await token.adapter.upsert(stored.jti, stored, jwt.payload.exp - jwt.payload.iat);
      },
    },
  },
  extraTokenClaims: async (ctx, token) => ({
    client_id: token.clientId,
    groups: groupsByClient.get(token.clientId) ?? [],
  }),
});

const routes = {
  introspection: '/token/introspection',
  revocation: '/token/revocation',
};

// RFC 8414 metadata: the same document as OIDC discovery.
provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/oauth-authorization-server') {
    ctx.path = '/.well-known/openid-configuration';
  }
  await next();
});

// Introspection and revocation of JWT access tokens (see the top).
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || (ctx.path !== routes.introspection && ctx.path !== routes.revocation)
      || !ctx.is('application/x-www-form-urlencoded')) {
    await next();
    return;
  }
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  const params = querystring.parse(raw);
  let jti;
  if (typeof params.token === 'string') {
    let isJWT = false;
    try {
      isJWT = !!jose.decodeProtectedHeader(params.token);
    } catch {}
    if (isJWT) {
      try {
        ({ payload: { jti } } = await jose.jwtVerify(params.token, publicJWKS, { issuer, typ: 'at+jwt' }));
      } catch {}
      // An unverifiable JWT becomes a value that matches nothing.
      params.token = typeof jti === 'string' ? storageKey(jti) : `invalid-${Date.now()}`;
    }
  }
  // oidc-provider reads an already consumed body from req.body.
  ctx.req.body = querystring.stringify(params);
  await next();
  if (ctx.path === routes.introspection && ctx.body?.active) {
    // As in the JWT: its jti, and sub = client_id for client credentials.
    ctx.body = { sub: ctx.body.client_id, ...ctx.body, ...(jti ? { jti } : {}) };
  }
});

// The login form of OpenID Connect sign-in (see the top):
// GET /interaction/<uid> shows it, POST /interaction/<uid>/login checks it.
const escapeHTML = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, message) => `<!doctype html>
<html><head><title>Sign in</title></head><body>
<h1>Sign in</h1>${message ? `\n<p role="alert">${escapeHTML(message)}</p>` : ''}
<form method="post" action="/interaction/${encodeURIComponent(uid)}/login">
<input type="text" name="login" autocomplete="username">
<input type="password" name="password" autocomplete="current-password">
<button type="submit">Sign in</button>
</form>
</body></html>
`;
provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
  if (!login || !m) {
    await next();
    return;
  }
  ctx.set('Cache-Control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch {
    details = undefined;
  }
  if (!details || details.uid !== m[1]) {
    ctx.status = 400;
    ctx.type = 'text';
    ctx.body = 'This sign-in is not in progress any more.';
    return;
  }
  if (details.prompt.name !== 'login') {
    // Consent is implied (loadExistingGrant); nothing else is asked.
    ctx.status = 501;
    ctx.type = 'text';
    ctx.body = `prompt ${details.prompt.name} is not implemented`;
    return;
  }
  if (ctx.method === 'GET' && !m[2]) {
    ctx.type = 'html';
    ctx.body = loginPage(details.uid);
    return;
  }
  if (ctx.method !== 'POST' || !m[2]) {
    ctx.status = 405;
    return;
  }
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const form = querystring.parse(Buffer.concat(chunks).toString('utf8'));
  if (form.login !== LOGIN_USER.login || form.password !== LOGIN_USER.password) {
    ctx.type = 'html';
    ctx.body = loginPage(details.uid, 'Wrong login or password.');
    return;
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId: LOGIN_USER.sub },
  }, { mergeWithLastSubmission: false });
  ctx.redirect(returnTo);
  ctx.status = 303;
});

provider.on('server_error', (ctx, err) => console.error('idp: server_error', err));

server.on('request', provider.callback());

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`IDP READY ${issuer}\n`);
