// End to end: the real Ably JS SDK (npm `ably`) obtains Ably JWTs through `authUrl` from the
// `issue-jwt` function running under `cargo lambda watch`, with the dev settings
// (dev/dev.env, dev/policy.json). Tokens are verified with node `jsonwebtoken`, an
// implementation independent of ours, and every claim is checked against dev/policy.json.
// Only loopback is reached: the SDK's Ably host is a local trap that must see no request.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ably from 'ably';
import jwt from 'jsonwebtoken';
import {
  startWatch,
  startAblyTrap,
  DEV_POLICY,
  DEV_ENV,
  DEV_KEY_NAME,
  DEV_KEY_SECRET,
  DEV_CALLER_SECRET,
  ablyError,
} from './harness.mjs';

const ALLOWED_ORIGIN = DEV_ENV.CORS_ALLOWED_ORIGINS.split(',')[0].trim();
const OTHER_ORIGIN = 'http://evil.example';

let watch;
let trap;
let authUrl;
const callerTokens = [];

before(async () => {
  trap = await startAblyTrap();
  watch = await startWatch();
  authUrl = `${watch.baseUrl}/auth/jwt`;
});

after(async () => {
  await watch?.stop();
  await trap?.close();
});

// ------------------------------------------------------------------ helpers

/** A caller (session) token as the app's backend would sign it: HS256 with the dev caller secret. */
function callerToken({ sub = 'alice', name = 'Alice', org = 'acme', roles = [], ttl = 7200, iat } = {}) {
  const now = iat ?? Math.floor(Date.now() / 1000);
  const token = jwt.sign({ sub, name, org, roles, iat: now, exp: now + ttl }, DEV_CALLER_SECRET, {
    algorithm: 'HS256',
    noTimestamp: true,
  });
  callerTokens.push(token);
  return token;
}

/** An ably-js REST client whose only way to a token is our authUrl, and whose Ably host is the trap. */
function ablyClient(options = {}) {
  return new Ably.Rest({
    authUrl,
    endpoint: '127.0.0.1',
    port: trap.port,
    tls: false,
    logLevel: 0,
    ...options,
  });
}

const bearer = (token) => ({ Authorization: `Bearer ${token}` });

/** Verify an Ably JWT with node jsonwebtoken (HS256, the dev key's secret); returns { header, payload }. */
function verifyAblyJwt(token) {
  assert.equal(typeof token, 'string');
  assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'a compact JWS, nothing around it');
  return jwt.verify(token, DEV_KEY_SECRET, { algorithms: ['HS256'], complete: true });
}

/** Placeholder substitution as the policy documents it: `{claim}` → the caller's claim. */
const fill = (template, claims, escape = (s) => s) =>
  template.replace(/\{([A-Za-z0-9_.]+)\}/g, (_, k) => escape(String(claims[k])));
const jsonEscape = (s) => JSON.stringify(s).slice(1, -1);

/** Canonical capability text: resources sorted, operations sorted, no whitespace. */
function canonical(capability) {
  const out = {};
  for (const res of Object.keys(capability).sort()) out[res] = [...new Set(capability[res])].sort();
  return JSON.stringify(out);
}

/** What dev/policy.json grants a verified caller with these claims (computed here, independently). */
function expectedGrant(claims) {
  const capability = {};
  for (const [res, ops] of Object.entries(DEV_POLICY.capability)) capability[fill(res, claims)] = [...ops];
  const channelClaims = {};
  for (const [res, tpl] of Object.entries(DEV_POLICY.channelClaims ?? {})) {
    channelClaims[fill(res, claims)] = fill(tpl, claims, jsonEscape);
  }
  const rateLimits = { ...(DEV_POLICY.rateLimits ?? {}) };
  let ttlSeconds = DEV_POLICY.ttlSeconds;
  for (const role of claims.roles ?? []) {
    const g = DEV_POLICY.roles.grants[role];
    if (!g) continue;
    for (const [res, ops] of Object.entries(g.capability ?? {})) {
      const r = fill(res, claims);
      capability[r] = [...(capability[r] ?? []), ...ops];
    }
    for (const [res, tpl] of Object.entries(g.channelClaims ?? {})) {
      channelClaims[fill(res, claims)] = fill(tpl, claims, jsonEscape);
    }
    Object.assign(rateLimits, g.rateLimits ?? {});
    if (g.ttlSeconds) ttlSeconds = Math.min(ttlSeconds, g.ttlSeconds);
  }
  return {
    clientId: fill(DEV_POLICY.clientId, claims),
    capability: canonical(capability),
    channelClaims,
    rateLimits,
    ttlSeconds,
    revocationKey: fill(DEV_POLICY.revocationKey, claims),
  };
}

/** Assert the whole token: header, signature, and exactly the claims the policy gives. */
function assertTokenMatchesPolicy(token, claims, { ttlSeconds, capability } = {}) {
  const { header, payload } = verifyAblyJwt(token);
  assert.deepEqual(header, { typ: 'JWT', alg: 'HS256', kid: DEV_KEY_NAME });
  const want = expectedGrant(claims);
  const expected = {
    iat: payload.iat,
    exp: payload.iat + (ttlSeconds ?? want.ttlSeconds),
    'x-ably-capability': capability ?? want.capability,
    'x-ably-clientId': want.clientId,
    'x-ably-revocation-key': want.revocationKey,
  };
  for (const [res, value] of Object.entries(want.channelClaims)) expected[`ably.channel.${res}`] = value;
  for (const [res, rate] of Object.entries(want.rateLimits)) {
    expected[`ably.limits.publish.perAttachment.maxRate.${res}`] = rate;
  }
  assert.deepEqual(payload, expected);
  assert.ok(Number.isInteger(payload.iat) && Number.isInteger(payload.exp), 'iat/exp are integer seconds');
  assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 300, 'iat is now (seconds, not milliseconds)');
  return payload;
}

// ------------------------------------------------------------------ through the SDK

test('rsa8c_sdk_gets_jwt_through_authurl_and_every_claim_matches_the_policy', async () => {
  const claims = { sub: 'alice', name: 'Alice', org: 'acme', roles: [] };
  const client = ablyClient({ authHeaders: bearer(callerToken(claims)) });
  const details = await client.auth.requestToken();
  assert.deepEqual(Object.keys(details), ['token'], 'an application/jwt answer is used as the token itself');
  const payload = assertTokenMatchesPolicy(details.token, claims);

  // Spelled out once, beside the policy-derived comparison above.
  assert.equal(payload['x-ably-clientId'], 'alice');
  assert.deepEqual(JSON.parse(payload['x-ably-capability']), {
    'chat:*': ['history', 'subscribe'],
    'chat:alice': ['presence', 'publish', 'subscribe'],
  });
  assert.equal(
    payload['x-ably-capability'],
    '{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}',
  );
  assert.deepEqual(JSON.parse(payload['ably.channel.chat:*']), { name: 'Alice' });
  assert.equal(payload['ably.limits.publish.perAttachment.maxRate.chat:*'], 5);
  assert.equal(payload['x-ably-revocation-key'], 'acme');
  assert.equal(payload.exp - payload.iat, 3600);
});

test('authorize_keeps_the_jwt_as_the_clients_token_without_contacting_ably', async () => {
  const claims = { sub: 'carol', name: 'Carol', org: 'globex', roles: [] };
  const client = ablyClient({ authHeaders: bearer(callerToken(claims)) });
  const details = await client.auth.authorize();
  assertTokenMatchesPolicy(details.token, claims);
  assert.equal(client.auth.tokenDetails.token, details.token);
  assert.deepEqual(trap.requests, [], 'the SDK must not contact Ably to obtain a JWT');
});

test('moderator_role_gets_union_capability_moderator_channel_claim_and_900s_ttl', async () => {
  const claims = { sub: 'alice', name: 'Alice', org: 'acme', roles: ['moderator'] };
  const client = ablyClient({ authHeaders: bearer(callerToken(claims)) });
  const { token } = await client.auth.requestToken();
  const payload = assertTokenMatchesPolicy(token, claims);
  assert.equal(payload.exp - payload.iat, 900);
  assert.deepEqual(JSON.parse(payload['x-ably-capability']), {
    'chat:*': ['history', 'message-delete-any', 'presence', 'publish', 'subscribe'],
    'chat:alice': ['presence', 'publish', 'subscribe'],
  });
  assert.equal(payload['ably.channel.chat:*'], 'moderator');
  assert.equal(payload['ably.limits.publish.perAttachment.maxRate.chat:*'], 5);
});

test('roles_claim_as_a_string_is_honoured_and_unknown_roles_add_nothing', async () => {
  const claims = { sub: 'dave', name: 'Dave', org: 'acme', roles: 'moderator' };
  const client = ablyClient({ authHeaders: bearer(callerToken(claims)) });
  const { token } = await client.auth.requestToken();
  assertTokenMatchesPolicy(token, { ...claims, roles: ['moderator'] });

  const plain = { sub: 'erin', name: 'Erin', org: 'acme', roles: ['astronaut'] };
  const { token: t2 } = await ablyClient({ authHeaders: bearer(callerToken(plain)) }).auth.requestToken();
  assertTokenMatchesPolicy(t2, { ...plain, roles: [] });
});

test('authmethod_post_sends_a_form_body_and_gets_the_same_grant', async () => {
  const claims = { sub: 'alice', name: 'Alice', org: 'acme', roles: [] };
  const client = ablyClient({
    authMethod: 'POST',
    authHeaders: bearer(callerToken(claims)),
    authParams: { rnd: 'cache-buster', app_hint: 'ignored' }, // unknown parameters are ignored
  });
  const { token } = await client.auth.requestToken({ ttl: 120_000 });
  assertTokenMatchesPolicy(token, claims, { ttlSeconds: 120 });
});

test('ttl_param_in_milliseconds_only_shortens', async () => {
  const claims = { sub: 'alice', name: 'Alice', org: 'acme', roles: [] };
  const client = ablyClient({ authHeaders: bearer(callerToken(claims)) });
  const short = await client.auth.requestToken({ ttl: 600_000 });
  assertTokenMatchesPolicy(short.token, claims, { ttlSeconds: 600 });
  const long = await client.auth.requestToken({ ttl: 24 * 3600 * 1000 });
  assertTokenMatchesPolicy(long.token, claims, { ttlSeconds: 3600 });
});

test('requested_capability_narrows_the_grant', async () => {
  const claims = { sub: 'alice', name: 'Alice', org: 'acme', roles: [] };
  const client = ablyClient({ authHeaders: bearer(callerToken(claims)) });
  const { token } = await client.auth.requestToken({
    capability: { 'chat:alice': ['publish', 'history'], 'chat:lobby': ['subscribe', 'publish'] },
  });
  // chat:alice is covered by both granted resources: publish comes from "chat:alice",
  // history from "chat:*"; chat:lobby only by "chat:*", which does not allow publish.
  assertTokenMatchesPolicy(token, claims, {
    capability: '{"chat:alice":["history","publish"],"chat:lobby":["subscribe"]}',
  });
});

test('requested_capability_outside_the_grant_gets_403_40160', async () => {
  const client = ablyClient({ authHeaders: bearer(callerToken()) });
  const err = await ablyError(() => client.auth.requestToken({ capability: { 'admin:*': ['publish'] } }));
  assert.equal(err.statusCode, 403);
  assert.equal(err.code, 40160);
});

test('rsa4d_clientid_param_other_than_the_callers_gets_403_40102', async () => {
  const client = ablyClient({ authHeaders: bearer(callerToken({ sub: 'alice' })) });
  const err = await ablyError(() => client.auth.requestToken({ clientId: 'mallory' }));
  // ably-js surfaces the ErrorInfo body of the authUrl's answer as is.
  assert.equal(err.statusCode, 403);
  assert.equal(err.code, 40102);
  assert.match(err.message, /clientId/);

  // A client configured with another identity fails the same way when it authorizes.
  const impostor = ablyClient({ clientId: 'mallory', authHeaders: bearer(callerToken({ sub: 'alice' })) });
  const err2 = await ablyError(() => impostor.auth.authorize());
  assert.equal(err2.statusCode, 403);
  assert.equal(err2.code, 40102);
});

test('clientid_param_equal_to_the_callers_is_accepted', async () => {
  const claims = { sub: 'alice', name: 'Alice', org: 'acme', roles: [] };
  const client = ablyClient({ clientId: 'alice', authHeaders: bearer(callerToken(claims)) });
  const details = await client.auth.authorize();
  assertTokenMatchesPolicy(details.token, claims);
});

test('no_authorization_gets_the_anonymous_grant_without_clientid', async () => {
  const client = ablyClient();
  const { token } = await client.auth.requestToken();
  const { header, payload } = verifyAblyJwt(token);
  assert.deepEqual(header, { typ: 'JWT', alg: 'HS256', kid: DEV_KEY_NAME });
  assert.deepEqual(payload, {
    iat: payload.iat,
    exp: payload.iat + DEV_POLICY.anonymous.ttlSeconds,
    'x-ably-capability': canonical(DEV_POLICY.anonymous.capability),
  });
  assert.equal(payload['x-ably-capability'], '{"public:*":["subscribe"]}');
  assert.equal(payload.exp - payload.iat, 600);
});

test('anonymous_caller_asking_for_a_clientid_gets_403_40102', async () => {
  const err = await ablyError(() => ablyClient().auth.requestToken({ clientId: 'alice' }));
  assert.equal(err.statusCode, 403);
  assert.equal(err.code, 40102);
});

test('rsa4c_expired_caller_token_gets_401_40101', async () => {
  const expired = callerToken({ iat: Math.floor(Date.now() / 1000) - 7200, ttl: 3600 });
  const err = await ablyError(() => ablyClient({ authHeaders: bearer(expired) }).auth.requestToken());
  assert.equal(err.statusCode, 401);
  assert.equal(err.code, 40101);
  assert.match(err.message, /expired/i);
});

test('caller_token_signed_with_another_secret_gets_401_40101', async () => {
  const forged = jwt.sign({ sub: 'alice', roles: ['admin'] }, 'not-the-dev-caller-secret-0123456789abcdef', {
    algorithm: 'HS256',
    expiresIn: 3600,
  });
  const err = await ablyError(() => ablyClient({ authHeaders: bearer(forged) }).auth.requestToken());
  assert.equal(err.statusCode, 401);
  assert.equal(err.code, 40101);
});

test('json_in_the_name_claim_cannot_add_fields_to_the_channel_claim', async () => {
  const claims = { sub: 'alice', name: 'x","role":"admin', org: 'acme', roles: [] };
  const { token } = await ablyClient({ authHeaders: bearer(callerToken(claims)) }).auth.requestToken();
  const payload = assertTokenMatchesPolicy(token, claims);
  assert.deepEqual(JSON.parse(payload['ably.channel.chat:*']), { name: 'x","role":"admin' });
});

// ------------------------------------------------------------------ raw HTTP details

test('rsa8c_success_is_application_jwt_exact_body_no_store', async () => {
  const res = await fetch(authUrl, { headers: bearer(callerToken()) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/jwt');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = await res.text();
  assert.equal(body, body.trim(), 'no surrounding whitespace or trailing newline');
  assert.ok(!body.startsWith('"'), 'not JSON-quoted');
  verifyAblyJwt(body);
});

test('cors_headers_on_success_for_an_allowed_origin', async () => {
  const res = await fetch(authUrl, { headers: { ...bearer(callerToken()), Origin: ALLOWED_ORIGIN } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
  assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  assert.equal(res.headers.get('access-control-expose-headers'), 'X-Ably-ErrorCode, X-Ably-ErrorMessage');
  assert.match(res.headers.get('vary') ?? '', /Origin/);
  verifyAblyJwt(await res.text());
});

test('cors_and_error_headers_on_an_error_for_an_allowed_origin', async () => {
  const expired = callerToken({ iat: Math.floor(Date.now() / 1000) - 7200, ttl: 3600 });
  const res = await fetch(authUrl, { headers: { ...bearer(expired), Origin: ALLOWED_ORIGIN } });
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
  assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  assert.equal(res.headers.get('access-control-expose-headers'), 'X-Ably-ErrorCode, X-Ably-ErrorMessage');
  assert.equal(res.headers.get('x-ably-errorcode'), '40101');
  const body = await res.json();
  assert.equal(body.error.code, 40101);
  assert.equal(body.error.statusCode, 401);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(res.headers.get('x-ably-errormessage'), body.error.message);
});

test('forbidden_answer_carries_errorinfo_and_cors_headers', async () => {
  const res = await fetch(`${authUrl}?clientId=mallory`, {
    headers: { ...bearer(callerToken({ sub: 'alice' })), Origin: ALLOWED_ORIGIN },
  });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('x-ably-errorcode'), '40102');
  assert.equal(res.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
  assert.equal(res.headers.get('access-control-expose-headers'), 'X-Ably-ErrorCode, X-Ably-ErrorMessage');
  const body = await res.json();
  assert.deepEqual([body.error.code, body.error.statusCode], [40102, 403]);
});

test('preflight_from_an_allowed_origin_allows_the_authorization_header', async () => {
  const res = await fetch(authUrl, {
    method: 'OPTIONS',
    headers: {
      Origin: ALLOWED_ORIGIN,
      'Access-Control-Request-Method': 'GET',
      'Access-Control-Request-Headers': 'authorization',
    },
  });
  assert.ok(res.status === 204 || res.status === 200, `preflight status ${res.status}`);
  assert.equal(res.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
  assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  assert.match(res.headers.get('access-control-allow-headers') ?? '', /\bauthorization\b/i);
  const methods = (res.headers.get('access-control-allow-methods') ?? '').split(',').map((m) => m.trim());
  assert.ok(methods.includes('GET') && methods.includes('POST'), `allowed methods: ${methods}`);
  assert.equal(res.headers.get('cache-control'), 'no-store');
});

test('unlisted_origin_gets_no_cors_headers', async () => {
  const res = await fetch(authUrl, { headers: { ...bearer(callerToken()), Origin: OTHER_ORIGIN } });
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  assert.equal(res.headers.get('access-control-allow-credentials'), null);

  const pre = await fetch(authUrl, {
    method: 'OPTIONS',
    headers: { Origin: OTHER_ORIGIN, 'Access-Control-Request-Method': 'GET' },
  });
  assert.equal(pre.headers.get('access-control-allow-origin'), null);
  assert.ok(pre.status >= 400, `preflight from an unlisted origin is refused (got ${pre.status})`);
});

// ------------------------------------------------------------------ afterwards

test('no_request_reached_ably', () => {
  assert.deepEqual(trap.requests, []);
});

test('function_logs_never_contain_the_key_secret_or_caller_tokens', () => {
  const logs = watch.logs();
  assert.ok(logs.includes('"route":"issue-jwt"'), 'the function logged its requests');
  assert.ok(!logs.includes(DEV_KEY_SECRET), 'key secret in the logs');
  assert.ok(!logs.includes(DEV_CALLER_SECRET), 'caller secret in the logs');
  for (const t of callerTokens) {
    assert.ok(!logs.includes(t.split('.')[2]), 'a caller token in the logs');
  }
});
