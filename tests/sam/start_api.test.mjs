// The real ably-js SDK against `sam local start-api` (tests/sam/run.py starts it, on the
// built template, with the function containers on the host network).
//
//   SAM_API_URL   the local API, e.g. http://127.0.0.1:40123
//   FAKE_ABLY_URL the loopback fake of Ably's REST API (tests/sam/fake_ably.py): the functions'
//                 ABLY_REST_URL and the SDK's REST host; GET /_requests lists what it received.
//
// Not part of `node --test tests/e2e/` (that suite runs the functions under cargo lambda
// watch); run through `make test-sam`. ably and jsonwebtoken come from tests/e2e/node_modules.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ROOT, DEV_ENV as DEV, DEV_KEY_NAME, DEV_KEY_SECRET, ablyError } from '../e2e/harness.mjs';

const require = createRequire(path.join(ROOT, 'tests', 'e2e', 'package.json'));
const Ably = require('ably');
const jwt = require('jsonwebtoken');

const API = process.env.SAM_API_URL;
const FAKE = process.env.FAKE_ABLY_URL;

const ORIGIN = DEV.CORS_ALLOWED_ORIGINS.split(',')[0].trim();
const FUNCTION_AGENT = /^ably-token-lambda\//;

before(() => {
  assert.ok(API && FAKE, 'SAM_API_URL and FAKE_ABLY_URL are set (run through make test-sam)');
  for (const url of [API, FAKE]) assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback only');
});

function callerToken({ sub = 'alice', name = 'Alice', org = 'acme', roles = [], ttl = 7200, iat } = {}) {
  const now = iat ?? Math.floor(Date.now() / 1000);
  return jwt.sign({ sub, name, org, roles, iat: now, exp: now + ttl }, DEV.CALLER_HS256_SECRET, {
    algorithm: 'HS256',
    noTimestamp: true,
  });
}
const bearer = (token) => ({ Authorization: `Bearer ${token}` });

/** ably-js REST client: tokens from `route` of the local API, Ably REST host = the fake. */
function ablyClient(route, options = {}) {
  const fake = new URL(FAKE);
  return new Ably.Rest({
    authUrl: `${API}${route}`,
    endpoint: '127.0.0.1',
    port: Number(fake.port),
    tls: false,
    logLevel: 0,
    ...options,
  });
}

async function fakeRequests() {
  const res = await fetch(`${FAKE}/_requests`);
  return res.json();
}
async function sinceNow() {
  const mark = (await fakeRequests()).length;
  return async () => (await fakeRequests()).slice(mark);
}

function assertErrorInfo(res, body, status, code) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.headers.get('x-ably-errorcode'), String(code));
  assert.deepEqual([body.error.code, body.error.statusCode], [code, status]);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(res.headers.get('x-ably-errormessage'), body.error.message);
}

test('rsa8c_sdk_gets_an_ably_jwt_through_sam_local_start_api', async () => {
  const seen = await sinceNow();
  const client = ablyClient('/auth/jwt', { authHeaders: bearer(callerToken()) });
  const details = await client.auth.authorize();
  const { header, payload } = jwt.verify(details.token, DEV_KEY_SECRET, { algorithms: ['HS256'], complete: true });
  assert.deepEqual(header, { typ: 'JWT', alg: 'HS256', kid: DEV_KEY_NAME });
  assert.equal(payload['x-ably-clientId'], 'alice');
  assert.deepEqual(JSON.parse(payload['x-ably-capability']), {
    'chat:*': ['history', 'subscribe'],
    'chat:alice': ['presence', 'publish', 'subscribe'],
  });
  assert.equal(payload.exp - payload.iat, 3600);
  assert.deepEqual(await seen(), [], 'an Ably JWT needs no call to Ably');
});

test('rsa8c_sdk_exchanges_the_token_request_from_sam_local_at_the_fake_ably', async () => {
  const seen = await sinceNow();
  const client = ablyClient('/auth/token-request', { authHeaders: bearer(callerToken()) });
  const details = await client.auth.requestToken();
  const calls = await seen();
  assert.equal(calls.length, 1, 'the SDK made exactly one requestToken call');
  assert.equal(calls[0].path, `/keys/${DEV_KEY_NAME}/requestToken`);
  assert.doesNotMatch(calls[0].headers['user-agent'] ?? '', FUNCTION_AGENT, 'the SDK exchanged it, not the function');
  assert.ok(calls[0].tokenRequest, 'the fake accepted the TokenRequest (MAC, timestamp, nonce)');
  assert.equal(calls[0].tokenRequest.clientId, 'alice');
  assert.equal(details.token, calls[0].tokenDetails.token);
  assert.equal(details.clientId, 'alice');
});

test('rsa8c_sdk_gets_an_ably_token_that_the_function_got_from_the_fake_ably', async () => {
  const seen = await sinceNow();
  const client = ablyClient('/auth/token', { authHeaders: bearer(callerToken({ roles: ['moderator'] })) });
  const details = await client.auth.requestToken();
  const calls = await seen();
  assert.equal(calls.length, 1, 'one requestToken, made by the function');
  assert.match(calls[0].headers['user-agent'] ?? '', FUNCTION_AGENT);
  assert.equal(details.token, calls[0].tokenDetails.token);
  assert.equal(details.keyName, DEV_KEY_NAME);
  assert.equal(details.clientId, 'alice');
  assert.equal(details.expires - details.issued, 900_000, 'the moderator role shortens the TTL');
});

test('rsa4d_other_clientid_gets_403_40102_with_errorinfo', async () => {
  const err = await ablyError(() =>
    ablyClient('/auth/jwt', { authHeaders: bearer(callerToken()), authParams: { clientId: 'mallory' } }).auth.authorize(),
  );
  assert.equal(err.statusCode, 403);
  assert.equal(err.code, 40102);
  const res = await fetch(`${API}/auth/jwt?clientId=mallory`, { headers: { ...bearer(callerToken()), Origin: ORIGIN } });
  assertErrorInfo(res, await res.json(), 403, 40102);
  assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
});

test('rsa4c_expired_caller_token_gets_401_40101_with_errorinfo', async () => {
  const expired = callerToken({ iat: Math.floor(Date.now() / 1000) - 7200, ttl: 3600 });
  const err = await ablyError(() => ablyClient('/auth/token-request', { authHeaders: bearer(expired) }).auth.requestToken());
  assert.equal(err.statusCode, 401);
  assert.equal(err.code, 40101);
  const res = await fetch(`${API}/auth/jwt`, { headers: bearer(expired) });
  assertErrorInfo(res, await res.json(), 401, 40101);
});

test('cors_preflight_is_answered_by_the_function', async () => {
  const res = await fetch(`${API}/auth/jwt`, {
    method: 'OPTIONS',
    headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
  });
  assert.equal(res.status, 204);
  // The function's answer (SAM's own CORS answer would be a 200 without Cache-Control).
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.headers.get('access-control-allow-origin'), ORIGIN);
  assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  assert.match(res.headers.get('access-control-allow-headers') ?? '', /\bauthorization\b/i);
  const methods = (res.headers.get('access-control-allow-methods') ?? '').split(',').map((m) => m.trim());
  assert.ok(methods.includes('GET') && methods.includes('POST'), `allowed methods: ${methods}`);

  const other = await fetch(`${API}/auth/jwt`, {
    method: 'OPTIONS',
    headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'GET' },
  });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  assert.ok(other.status >= 400, `preflight from an unlisted origin is refused (got ${other.status})`);
});

test('admin_revokes_through_sam_local_and_the_function_calls_the_fake_ably', async () => {
  const seen = await sinceNow();
  const res = await fetch(`${API}/auth/revoke`, {
    method: 'POST',
    headers: { ...bearer(callerToken({ sub: 'ops-1', roles: ['admin'] })), 'content-type': 'application/json' },
    body: JSON.stringify({ clientIds: ['alice'] }),
  });
  assert.equal(res.status, 200);
  const result = await res.json();
  assert.deepEqual([result.successCount, result.failureCount], [1, 0]);
  const calls = await seen();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].path, `/keys/${DEV_KEY_NAME}/revokeTokens`);
  assert.equal(calls[0].headers.authorization, `Basic ${Buffer.from(DEV.ABLY_API_KEY).toString('base64')}`);
});
