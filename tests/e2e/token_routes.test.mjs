// End to end for the other token types and revocation: the real Ably JS SDK (npm `ably`)
// authenticates through `issue-token-request` and `issue-ably-token` running under
// `cargo lambda watch`, and an operator revokes through `revoke-tokens`.
//
// "Ably" here is a fake REST server on loopback, written below: it verifies the MAC of every
// TokenRequest with node:crypto (independently of the functions' Rust code), refuses replayed
// nonces (40105) and stale timestamps (40104), checks Basic auth on revokeTokens, and records
// every request. The SDK's REST host and the functions' ABLY_REST_URL both point at it, so:
//   - authUrl = /auth/token-request: the SDK receives a TokenRequest and exchanges it itself;
//   - authUrl = /auth/token: the function exchanges it and the SDK receives TokenDetails.
// Nothing reaches a non-loopback host.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ably from 'ably';
import jwt from 'jsonwebtoken';
import { startWatch, ablyError, DEV_ENV, DEV_KEY_NAME, DEV_KEY_SECRET, DEV_CALLER_SECRET } from './harness.mjs';

// The dev policy without channel claims, rate limits and a revocation key: TokenRequests and
// Ably Tokens cannot carry them, and the token routes refuse, at start-up, a policy that can
// grant them (see README). Revocation by clientId and by revocation key still works.
const TOKEN_POLICY = {
  clientId: '{sub}',
  ttlSeconds: 3600,
  capability: { 'chat:*': ['subscribe', 'history'], 'chat:{sub}': ['publish', 'subscribe', 'presence'] },
  roles: {
    claim: 'roles',
    grants: {
      moderator: { capability: { 'chat:*': ['publish', 'subscribe', 'presence', 'history'] }, ttlSeconds: 900 },
      admin: { mayRevoke: true },
    },
  },
  anonymous: { capability: { 'public:*': ['subscribe'] }, ttlSeconds: 600 },
};
const ALICE_CAPABILITY = '{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}';
const FUNCTION_AGENT = /^ably-token-lambda\//;

let fake;
let watch;
let policyDir;
const callerTokens = [];

before(async () => {
  fake = await startFakeAbly({ [DEV_KEY_NAME]: DEV_KEY_SECRET });
  policyDir = mkdtempSync(path.join(tmpdir(), 'token-routes-e2e-'));
  const policyFile = path.join(policyDir, 'policy.json');
  writeFileSync(policyFile, JSON.stringify(TOKEN_POLICY));
  watch = await startWatch({
    env: {
      TOKEN_POLICY_FILE: policyFile,
      TOKEN_ROUTES_POLICY_FILE: policyFile,
      ABLY_REST_URL: fake.url,
      ABLY_KEY_REVOCABLE: 'true',
    },
  });
});

after(async () => {
  await watch?.stop();
  await fake?.close();
  if (policyDir) rmSync(policyDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ the fake Ably REST server

/** Ably's signText: every field followed by a newline, absent fields empty. */
function signText(tr) {
  const f = (v) => (v === undefined || v === null ? '' : String(v));
  return [tr.keyName, f(tr.ttl), f(tr.capability), f(tr.clientId), f(tr.timestamp), f(tr.nonce)].join('\n') + '\n';
}

function startFakeAbly(keys) {
  const requests = [];
  const nonces = new Set();
  const faults = [];
  let issued = 0;

  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const fail = (res, status, code, message) =>
    send(res, status, { error: { message, code, statusCode: status } }, { 'x-ably-errorcode': String(code) });

  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const entry = { method: req.method, path: req.url, headers: req.headers, body: raw };
      requests.push(entry);
      const fault = faults.shift();
      if (fault) return fail(res, fault.status, fault.code, fault.message);
      const now = Date.now();
      if (req.method === 'GET' && req.url === '/time') return send(res, 200, [now]);

      const m = /^\/keys\/([^/]+)\/(requestToken|revokeTokens)$/.exec(req.url.split('?')[0]);
      if (!m || req.method !== 'POST') return fail(res, 404, 40400, 'no such resource');
      const keyName = decodeURIComponent(m[1]);
      const secret = keys[keyName];
      if (!secret) return fail(res, 404, 40400, 'key not found');
      let body;
      try {
        body = JSON.parse(raw);
      } catch {
        return fail(res, 400, 40000, 'body is not JSON');
      }

      if (m[2] === 'requestToken') {
        if (body.keyName !== keyName) return fail(res, 401, 40101, 'keyName does not match');
        const expected = createHmac('sha256', secret).update(signText(body)).digest();
        const given = Buffer.from(String(body.mac ?? ''), 'base64');
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          return fail(res, 401, 40101, 'Invalid mac');
        }
        if (!Number.isInteger(body.timestamp) || Math.abs(body.timestamp - now) > 120_000) {
          return fail(res, 401, 40104, 'Timestamp not current');
        }
        if (typeof body.nonce !== 'string' || body.nonce.length < 16) return fail(res, 400, 40000, 'nonce too short');
        if (nonces.has(body.nonce)) return fail(res, 401, 40105, 'Nonce value replayed');
        nonces.add(body.nonce);
        entry.tokenRequest = body;
        const ttl = body.ttl ?? 3_600_000;
        const details = {
          token: `fake-ably-token-${++issued}.${randomBytes(8).toString('hex')}`,
          keyName,
          issued: now,
          expires: now + ttl,
          capability: body.capability ?? '{"*":["*"]}',
        };
        if (body.clientId) details.clientId = body.clientId;
        entry.tokenDetails = details;
        return send(res, 200, details);
      }

      // revokeTokens: Basic auth with the issuing key.
      const basic = `Basic ${Buffer.from(`${keyName}:${secret}`).toString('base64')}`;
      if (req.headers.authorization !== basic) return fail(res, 401, 40101, 'Invalid credentials');
      if (!Array.isArray(body.targets) || body.targets.length === 0 || body.targets.length > 100) {
        return fail(res, 400, 40003, 'between 1 and 100 targets');
      }
      const issuedBefore = body.issuedBefore ?? now;
      const margin = body.allowReauthMargin ? 30_000 : 0;
      const results = body.targets.map((target) => ({ target, issuedBefore, appliesAt: issuedBefore + margin }));
      return send(res, 201, { successCount: results.length, failureCount: 0, results });
    });
  });

  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        requests,
        failNext: (status, code, message) => faults.push({ status, code, message }),
        close: () =>
          new Promise((r) => {
            server.closeAllConnections?.();
            server.close(r);
          }),
      });
    });
  });
}

// ------------------------------------------------------------------ helpers

function callerToken({ sub = 'alice', name = 'Alice', org = 'acme', roles = [], ttl = 7200 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const token = jwt.sign({ sub, name, org, roles, iat: now, exp: now + ttl }, DEV_CALLER_SECRET, {
    algorithm: 'HS256',
    noTimestamp: true,
  });
  callerTokens.push(token);
  return token;
}

const bearer = (token) => ({ Authorization: `Bearer ${token}` });

/** An ably-js REST client whose token comes from `route` and whose Ably REST host is the fake. */
function ablyClient(route, options = {}) {
  return new Ably.Rest({
    authUrl: `${watch.baseUrl}${route}`,
    endpoint: '127.0.0.1',
    port: fake.port,
    tls: false,
    logLevel: 0,
    ...options,
  });
}

const sinceNow = () => {
  const mark = fake.requests.length;
  return () => fake.requests.slice(mark);
};

// ------------------------------------------------------------------ issue-token-request

test('rsa8c_sdk_exchanges_the_token_request_from_authurl_at_ably', async () => {
  const seen = sinceNow();
  const client = ablyClient('/auth/token-request', { authHeaders: bearer(callerToken()) });
  const details = await client.auth.requestToken();

  const calls = seen();
  assert.equal(calls.length, 1, 'the SDK itself made exactly one requestToken call');
  const [call] = calls;
  assert.equal(call.path, `/keys/${DEV_KEY_NAME}/requestToken`);
  assert.doesNotMatch(call.headers['user-agent'] ?? '', FUNCTION_AGENT, 'the SDK exchanged it, not the function');
  const tr = call.tokenRequest;
  assert.ok(tr, 'the fake accepted the TokenRequest (MAC, timestamp, nonce)');
  assert.deepEqual(Object.keys(tr).sort(), ['capability', 'clientId', 'keyName', 'mac', 'nonce', 'timestamp', 'ttl']);
  assert.equal(tr.clientId, 'alice');
  assert.equal(tr.capability, ALICE_CAPABILITY);
  assert.equal(tr.ttl, 3_600_000);
  assert.ok(tr.nonce.length >= 16);

  assert.equal(details.token, call.tokenDetails.token);
  assert.equal(details.clientId, 'alice');
  assert.equal(details.capability, ALICE_CAPABILITY);
  assert.equal(details.expires - details.issued, 3_600_000);
});

test('token_request_answer_is_json_with_numbers_and_no_token_fields', async () => {
  const res = await fetch(`${watch.baseUrl}/auth/token-request?ttl=600000&rnd=1`, {
    headers: bearer(callerToken()),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const tr = await res.json();
  assert.equal(tr.keyName, DEV_KEY_NAME);
  assert.equal(tr.ttl, 600_000);
  assert.equal(typeof tr.timestamp, 'number');
  assert.ok(Math.abs(tr.timestamp - Date.now()) < 60_000, 'timestamp in milliseconds');
  assert.equal(tr.token, undefined);
  assert.equal(tr.issued, undefined);
  const mac = createHmac('sha256', DEV_KEY_SECRET).update(signText(tr)).digest('base64');
  assert.equal(tr.mac, mac, 'MAC recomputed with node:crypto');
});

test('anonymous_sdk_gets_a_token_through_the_token_request_without_clientid', async () => {
  const details = await ablyClient('/auth/token-request').auth.requestToken();
  assert.equal(details.clientId, undefined);
  assert.equal(details.capability, '{"public:*":["subscribe"]}');
  assert.equal(details.expires - details.issued, 600_000);
});

test('sdk_requested_capability_narrows_the_token_request', async () => {
  const client = ablyClient('/auth/token-request', { authHeaders: bearer(callerToken()) });
  const details = await client.auth.requestToken({ capability: { 'chat:alice': ['publish', 'push-admin'], 'admin:x': ['publish'] } });
  assert.equal(details.capability, '{"chat:alice":["publish"]}', 'only what both the request and the grant allow');
});

// ------------------------------------------------------------------ issue-ably-token

test('rsa8c_sdk_gets_token_details_directly_from_the_ably_token_route', async () => {
  const seen = sinceNow();
  const client = ablyClient('/auth/token', { authHeaders: bearer(callerToken({ roles: ['moderator'] })) });
  const details = await client.auth.requestToken();

  const calls = seen();
  assert.equal(calls.length, 1, 'one requestToken, made by the function');
  assert.match(calls[0].headers['user-agent'] ?? '', FUNCTION_AGENT);
  assert.equal(calls[0].headers['x-ably-version'], '6');
  assert.equal(calls[0].headers.authorization, undefined);
  const issued = calls[0].tokenDetails;
  assert.deepEqual(
    { token: details.token, keyName: details.keyName, issued: details.issued, expires: details.expires },
    { token: issued.token, keyName: DEV_KEY_NAME, issued: issued.issued, expires: issued.expires },
  );
  assert.equal(details.clientId, 'alice');
  assert.equal(details.expires - details.issued, 900_000, 'the moderator role shortens the TTL');
  assert.deepEqual(JSON.parse(details.capability), {
    'chat:*': ['history', 'presence', 'publish', 'subscribe'],
    'chat:alice': ['presence', 'publish', 'subscribe'],
  });
});

test('ably_token_route_answers_exactly_the_token_details_fields', async () => {
  const res = await fetch(`${watch.baseUrl}/auth/token`, { headers: bearer(callerToken()) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const details = await res.json();
  assert.deepEqual(Object.keys(details).sort(), ['capability', 'clientId', 'expires', 'issued', 'keyName', 'token']);
});

test('ably_5xx_reaches_the_sdk_as_a_retriable_502_50200', async () => {
  fake.failNext(500, 50000, 'fake internal error');
  const err = await ablyError(() =>
    ablyClient('/auth/token', { authHeaders: bearer(callerToken()) }).auth.requestToken(),
  );
  assert.equal(err.statusCode, 502);
  assert.equal(err.code, 50200);
  assert.doesNotMatch(err.message, /fake internal error/);
});

test('ably_4xx_reaches_the_sdk_as_500_not_403', async () => {
  fake.failNext(403, 40300, 'account disabled at the fake');
  const err = await ablyError(() =>
    ablyClient('/auth/token', { authHeaders: bearer(callerToken()) }).auth.requestToken(),
  );
  assert.equal(err.statusCode, 500);
  assert.equal(err.code, 50000);
  assert.doesNotMatch(err.message, /account disabled/);
});

test('ably_429_reaches_the_caller_as_503_with_retry_after', async () => {
  fake.failNext(429, 42910, 'rate limited');
  const res = await fetch(`${watch.baseUrl}/auth/token`, { headers: bearer(callerToken()) });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('x-ably-errorcode'), '50300');
  assert.ok(Number(res.headers.get('retry-after')) >= 1);
  const body = await res.json();
  assert.deepEqual([body.error.code, body.error.statusCode], [50300, 503]);
});

// ------------------------------------------------------------------ revoke-tokens

test('admin_revokes_a_client_and_gets_the_batch_result', async () => {
  const seen = sinceNow();
  const res = await fetch(`${watch.baseUrl}/auth/revoke`, {
    method: 'POST',
    headers: { ...bearer(callerToken({ sub: 'ops-1', roles: ['admin'] })), 'content-type': 'application/json' },
    body: JSON.stringify({ clientIds: ['alice'], revocationKeys: ['acme'], allowReauthMargin: true }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  const result = await res.json();
  assert.equal(result.successCount, 2);
  assert.equal(result.failureCount, 0);
  assert.deepEqual(
    result.results.map((r) => r.target),
    ['clientId:alice', 'revocationKey:acme'],
  );
  for (const r of result.results) assert.equal(r.appliesAt - r.issuedBefore, 30_000);
  const [call] = seen();
  assert.equal(call.path, `/keys/${DEV_KEY_NAME}/revokeTokens`);
  assert.equal(call.headers.authorization, `Basic ${Buffer.from(`${DEV_KEY_NAME}:${DEV_KEY_SECRET}`).toString('base64')}`);
  assert.equal(call.headers['x-ably-version'], '6');
});

test('non_admin_revocation_gets_403_40300_and_no_caller_gets_401', async () => {
  const post = (headers) =>
    fetch(`${watch.baseUrl}/auth/revoke`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ clientIds: ['bob'] }),
    });
  const forbidden = await post(bearer(callerToken()));
  assert.equal(forbidden.status, 403);
  assert.equal((await forbidden.json()).error.code, 40300);
  const anonymous = await post({});
  assert.equal(anonymous.status, 401);
  assert.equal((await anonymous.json()).error.code, 40100);
});

test('bad_revocation_body_gets_400_naming_the_field', async () => {
  const res = await fetch(`${watch.baseUrl}/auth/revoke`, {
    method: 'POST',
    headers: { ...bearer(callerToken({ sub: 'ops-1', roles: ['admin'] })), 'content-type': 'application/json' },
    body: JSON.stringify({ clientIds: 'alice' }),
  });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.error.code, 40000);
  assert.match(body.error.message, /`clientIds`/);
});

// ------------------------------------------------------------------ afterwards

test('only_the_fake_was_contacted_and_logs_hold_no_secrets', () => {
  assert.ok(fake.requests.length > 0);
  const logs = watch.logs();
  for (const route of ['issue-token-request', 'issue-ably-token', 'revoke-tokens']) {
    assert.ok(logs.includes(`"route":"${route}"`), `${route} logged its requests`);
  }
  assert.ok(!logs.includes(DEV_KEY_SECRET), 'key secret in the logs');
  assert.ok(!logs.includes(DEV_CALLER_SECRET), 'caller secret in the logs');
  assert.ok(!logs.includes(Buffer.from(`${DEV_KEY_NAME}:${DEV_KEY_SECRET}`).toString('base64')), 'Basic credential in the logs');
  for (const t of callerTokens) assert.ok(!logs.includes(t.split('.')[2]), 'a caller token in the logs');
  assert.equal(DEV_ENV.ABLY_API_KEY, `${DEV_KEY_NAME}:${DEV_KEY_SECRET}`);
});
