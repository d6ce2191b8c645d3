// The Node.js side of `make bench-compare`: how users mint Ably tokens today.
//
//   node bench/node/compare.mjs --fixture target/bench-compare/rust-fixture.json --out target/bench-compare/node.json
//
// - `jwt_sign`: npm `jsonwebtoken` signing the Ably JWT with the claims and header the Rust
//   side minted (taken from the Rust token itself, so both sign the same claims), the secret
//   passed as a string as its README shows; `jwt_sign_keyobject`: the same with the secret as
//   a `crypto.KeyObject` made once (the fastest way to call it).
// - `create_token_request`: the `ably` SDK's `rest.auth.createTokenRequest({ttl, capability,
//   clientId, timestamp})` with the key in the client options and `queryTime: false`, then
//   `JSON.stringify` (an authUrl answers JSON).
//
// Before measuring it checks that it does the same work as Rust: the Rust JWT verifies with
// `jsonwebtoken` and decodes to the header and claims Node signs; Node's token decodes to the
// same; the SDK computes the Rust MAC for the Rust nonce. The network is blocked in this process
// (any socket connect or DNS lookup fails the run), so the SDK cannot contact Ably.
//
// Method: one thread (sync work on the main thread; the SDK call is awaited in sequence),
// 3 s of warm-up per operation (JIT), then 200 samples of a batch sized to ~5 ms each; the
// per-operation time of a sample is its time / batch size; the median over samples is reported
// with the quartiles. The packages come from tests/e2e/node_modules (`make tools`).

import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import dns from 'node:dns';
import assert from 'node:assert/strict';
import { createHmac, createSecretKey } from 'node:crypto';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(resolve(root, 'tests/e2e/package.json'));

// ---- no network: a connect or lookup anywhere in this process fails the run
const blocked = [];
const refuse = (what) => (...args) => {
  blocked.push(what);
  throw new Error(`bench-compare: ${what} attempted; the benchmark must not use the network`);
};
net.Socket.prototype.connect = refuse('socket connect');
dns.lookup = refuse('DNS lookup');
dns.promises.lookup = refuse('DNS lookup');
globalThis.fetch = refuse('fetch');

const jwt = require('jsonwebtoken');
const Ably = require('ably');

function packageVersion(name) {
  return JSON.parse(readFileSync(resolve(root, 'tests/e2e/node_modules', name, 'package.json'), 'utf8')).version;
}

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const fixturePath = arg('--fixture', resolve(root, 'target/bench-compare/rust-fixture.json'));
const outPath = arg('--out', resolve(root, 'target/bench-compare/node.json'));
const warmupMs = Number(arg('--warmup-ms', '3000'));
const samples = Number(arg('--samples', '200'));
const sampleMs = Number(arg('--sample-ms', '5'));

const fixture = JSON.parse(readFileSync(fixturePath, 'utf8'));
const [keyName, keySecret] = fixture.key.split(':');

// ---- the same work as Rust
const decoded = jwt.verify(fixture.jwt, keySecret, { algorithms: ['HS256'], complete: true, ignoreExpiration: true });
const claims = decoded.payload;
const header = decoded.header;
assert.deepEqual(header, { typ: 'JWT', alg: 'HS256', kid: keyName }, 'the Rust JWT header');
const signOptions = { algorithm: 'HS256', header: { typ: 'JWT', kid: keyName } };
// As the jsonwebtoken README does it: the secret as a string. jsonwebtoken 9 then first tries
// (and fails) to parse the string as a PEM private key on every call, which is slow.
const signJwt = () => jwt.sign(claims, keySecret, signOptions);
// The fastest way: a KeyObject made once (`crypto.createSecretKey`), as a tuned service would.
const secretKey = createSecretKey(Buffer.from(keySecret, 'utf8'));
const signJwtKeyObject = () => jwt.sign(claims, secretKey, signOptions);
for (const sign of [signJwt, signJwtKeyObject]) {
  const mine = jwt.decode(sign(), { complete: true });
  assert.deepEqual(mine.header, header, 'Node signs the same JWT header');
  assert.deepEqual(mine.payload, claims, 'Node signs the same JWT claims');
}

const rest = new Ably.Rest({
  key: fixture.key,
  queryTime: false,
  // Nowhere reachable either way: the socket layer above refuses any connection.
  endpoint: '127.0.0.1',
  port: 9,
  tls: false,
  logLevel: 0,
});
const tokenParams = () => ({ ...fixture.tokenParams });
const createTokenRequest = async () => JSON.stringify(await rest.auth.createTokenRequest(tokenParams()));
{
  const same = await rest.auth.createTokenRequest({ ...tokenParams(), nonce: fixture.fixedNonce });
  assert.equal(same.mac, fixture.tokenRequest.mac, 'the SDK computes the Rust MAC for the same nonce');
  assert.equal(same.capability, fixture.tokenRequest.capability, 'the same canonical capability');
  const fresh = JSON.parse(await createTokenRequest());
  assert.ok(fresh.nonce && fresh.nonce !== fixture.fixedNonce, 'a fresh nonce per request, like Rust');
}

// The floor: the HMAC-SHA256 alone over the same bytes, with Node's native crypto.
const signingInput = fixture.jwt.slice(0, fixture.jwt.lastIndexOf('.'));
const hmacFloorJwt = () => createHmac('sha256', secretKey).update(signingInput).digest('base64url');
const t = fixture.tokenRequest;
const signText = `${t.keyName}\n${t.ttl}\n${t.capability}\n${t.clientId}\n${t.timestamp}\n${t.nonce}\n`;
const hmacFloorTokenRequest = () => createHmac('sha256', secretKey).update(signText).digest('base64');
assert.equal(hmacFloorJwt(), fixture.jwt.slice(fixture.jwt.lastIndexOf('.') + 1), 'the floor computes the JWT signature');
assert.equal(hmacFloorTokenRequest(), t.mac, 'the floor computes the TokenRequest MAC');

// ---- measurement
const now = () => process.hrtime.bigint();

async function measure(name, fn, isAsync) {
  let sink = 0;
  const run = isAsync
    ? async (n) => { for (let i = 0; i < n; i++) sink += (await fn()).length; }
    : async (n) => { for (let i = 0; i < n; i++) sink += fn().length; };
  // warm-up, and the batch size for ~sampleMs per sample
  const warmEnd = now() + BigInt(warmupMs) * 1_000_000n;
  let n = 0;
  const t0 = now();
  while (now() < warmEnd) { await run(100); n += 100; }
  const perOp = Number(now() - t0) / n;
  const batch = Math.max(1, Math.round((sampleMs * 1e6) / perOp));
  const times = [];
  for (let s = 0; s < samples; s++) {
    const start = now();
    await run(batch);
    times.push(Number(now() - start) / batch);
  }
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
  if (sink === 0) throw new Error('no output');
  return { name, median_ns: q(0.5), q1_ns: q(0.25), q3_ns: q(0.75), batch, samples };
}

const results = [
  await measure('jwt_sign', signJwt, false),
  await measure('jwt_sign_keyobject', signJwtKeyObject, false),
  await measure('create_token_request', createTokenRequest, true),
  await measure('hmac_floor_jwt', hmacFloorJwt, false),
  await measure('hmac_floor_token_request', hmacFloorTokenRequest, false),
];
assert.deepEqual(blocked, [], 'no network use');

const out = {
  node: process.version,
  v8: process.versions.v8,
  jsonwebtoken: packageVersion('jsonwebtoken'),
  ably: packageVersion('ably'),
  results: Object.fromEntries(results.map((r) => [r.name, r])),
};
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, JSON.stringify(out, null, 2) + '\n');
for (const r of results) {
  console.log(`node ${r.name}: median ${(r.median_ns / 1000).toFixed(2)} µs (q1 ${(r.q1_ns / 1000).toFixed(2)}, q3 ${(r.q3_ns / 1000).toFixed(2)}; ${r.samples} samples of ${r.batch})`);
}
