// End to end with an OIDC identity provider: the real Ably JS SDK sends an RS256 bearer token
// issued by a local identity provider (OpenID discovery + JWKS on loopback, keys made by node's
// crypto) to `issue-jwt` under `cargo lambda watch`, configured with CALLER_ISSUER,
// CALLER_AUDIENCE and CALLER_OIDC_DISCOVERY=true. The Ably JWT is verified with node
// `jsonwebtoken`; the identity provider counts how often the function fetches its keys.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Ably from 'ably';
import jwt from 'jsonwebtoken';
import { startWatch, startAblyTrap, ablyError, DEV_KEY_NAME, DEV_KEY_SECRET } from './harness.mjs';

const AUDIENCE = 'ably-e2e-oidc';
const KID = 'e2e-rsa-1';

let idp;
let trap;
let watch;
let authUrl;

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const { privateKey: otherKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

/** A minimal identity provider: discovery document and JWKS, with fetch counters. */
function startIdentityProvider() {
  const counts = { discovery: 0, jwks: 0 };
  const server = http.createServer((req, res) => {
    const issuer = `http://127.0.0.1:${server.address().port}`;
    let body;
    if (req.url === '/.well-known/openid-configuration') {
      counts.discovery += 1;
      body = { issuer, jwks_uri: `${issuer}/keys`, id_token_signing_alg_values_supported: ['RS256'] };
    } else if (req.url === '/keys') {
      counts.jwks += 1;
      body = { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: KID, alg: 'RS256', use: 'sig' }] };
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' });
    res.end(JSON.stringify(body));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const issuer = `http://127.0.0.1:${server.address().port}`;
      resolve({ issuer, counts, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

before(async () => {
  idp = await startIdentityProvider();
  trap = await startAblyTrap();
  watch = await startWatch({
    env: { CALLER_ISSUER: idp.issuer, CALLER_AUDIENCE: AUDIENCE, CALLER_OIDC_DISCOVERY: 'true' },
  });
  authUrl = `${watch.baseUrl}/auth/jwt`;
});

after(async () => {
  await watch?.stop();
  await trap?.close();
  await idp?.close();
});

/** An ID token as the identity provider would issue it. */
function idToken({ sub = 'olivia', roles = [], aud = AUDIENCE, key = privateKey, ttl = 3600 } = {}) {
  return jwt.sign({ sub, name: 'Olivia', org: 'initech', roles }, key, {
    algorithm: 'RS256',
    keyid: KID,
    issuer: idp.issuer,
    audience: aud,
    expiresIn: ttl,
  });
}

function ablyClient(token) {
  return new Ably.Rest({
    authUrl,
    authHeaders: { Authorization: `Bearer ${token}` },
    endpoint: '127.0.0.1',
    port: trap.port,
    tls: false,
    logLevel: 0,
  });
}

test('oidc_rs256_bearer_token_gets_an_ably_jwt_through_authurl', async () => {
  const { token } = await ablyClient(idToken({ roles: ['moderator'] })).auth.requestToken();
  const { header, payload } = jwt.verify(token, DEV_KEY_SECRET, { algorithms: ['HS256'], complete: true });
  assert.deepEqual(header, { typ: 'JWT', alg: 'HS256', kid: DEV_KEY_NAME });
  assert.equal(payload['x-ably-clientId'], 'olivia');
  assert.deepEqual(JSON.parse(payload['x-ably-capability']), {
    'chat:*': ['history', 'message-delete-any', 'presence', 'publish', 'subscribe'],
    'chat:olivia': ['presence', 'publish', 'subscribe'],
  });
  assert.equal(payload['x-ably-revocation-key'], 'initech');
  assert.equal(payload['ably.channel.chat:*'], 'moderator');
  assert.equal(payload.exp - payload.iat, 900);
  assert.deepEqual(trap.requests, [], 'the SDK must not contact Ably to obtain a JWT');
});

test('oidc_token_for_another_audience_gets_401_40101', async () => {
  const err = await ablyError(() => ablyClient(idToken({ aud: 'another-app' })).auth.requestToken());
  assert.equal(err.statusCode, 401);
  assert.equal(err.code, 40101);
  assert.match(err.message, /audience/);
});

test('oidc_token_signed_by_another_key_gets_401_40101', async () => {
  const err = await ablyError(() => ablyClient(idToken({ key: otherKey })).auth.requestToken());
  assert.equal(err.statusCode, 401);
  assert.equal(err.code, 40101);
  assert.match(err.message, /signature/);
});

test('oidc_keys_are_discovered_and_fetched_once_for_many_requests', async () => {
  for (let i = 0; i < 10; i += 1) {
    const { token } = await ablyClient(idToken({ sub: `user-${i}` })).auth.requestToken();
    assert.equal(jwt.verify(token, DEV_KEY_SECRET, { algorithms: ['HS256'] })['x-ably-clientId'], `user-${i}`);
  }
  assert.deepEqual(idp.counts, { discovery: 1, jwks: 1 });
});
