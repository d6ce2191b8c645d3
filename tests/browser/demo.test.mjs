// The browser demo (examples/web) in a real browser: Debian's headless Chromium driven by
// playwright-core, the page served from one loopback origin by examples/web/serve.mjs, the
// `issue-jwt` function from another under `cargo lambda watch` (the e2e harness), so every
// token request is a cross-origin request with credentials.
//
// Asserts what a user sees: the token arrives and its claims shown match the policy (the token
// is also verified here with node `jsonwebtoken`, not our code), the expiry counts down, and the
// 401 / 403 cases show Ably's error codes as the SDK reports them and as the browser reads
// them from the CORS-exposed X-Ably-ErrorCode header. The page may reach only loopback.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startWatch, freePort, DEV_KEY_NAME, DEV_KEY_SECRET, DEV_POLICY } from '../e2e/harness.mjs';
import { startDemoServer } from '../../examples/web/serve.mjs';

const require = createRequire(import.meta.url);
const jwt = require('../e2e/node_modules/jsonwebtoken');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

let watch;
let demo;
let browser;
let page;
const offLoopback = [];
const pageErrors = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: run \`make browser-test\` (it installs Debian's chromium)`);
  }
  const demoPort = await freePort();
  const origin = `http://127.0.0.1:${demoPort}`;
  // The functions allow exactly the demo's origin (credentials need an exact origin).
  watch = await startWatch({ env: { CORS_ALLOWED_ORIGINS: origin } });
  demo = await startDemoServer({ port: demoPort, authBase: watch.baseUrl });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  const context = await browser.newContext();
  // Every request the page makes: loopback goes through, anything else is refused and recorded.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (LOOPBACK_HOSTS.has(url.hostname) && url.protocol === 'http:') return route.continue();
    offLoopback.push(url.href);
    return route.abort();
  });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(demo.url);
  await page.waitForSelector('body[data-ready="true"]');
});

after(async () => {
  if (page && process.env.BROWSER_TEST_SCREENSHOT) {
    await page.screenshot({ path: process.env.BROWSER_TEST_SCREENSHOT, fullPage: true }).catch(() => {});
  }
  await browser?.close();
  await demo?.close();
  await watch?.stop();
});

/** Canonical capability text: resources sorted, operations sorted, no whitespace. */
function canonical(capability) {
  const out = {};
  for (const resource of Object.keys(capability).sort()) out[resource] = [...capability[resource]].sort();
  return JSON.stringify(out);
}

/** `{claim}` substitution as the policy documents it. */
const fill = (template, claims) => template.replace(/\{([A-Za-z0-9_.]+)\}/g, (_, k) => String(claims[k]));

const text = (selector) => page.locator(selector).innerText();

async function screenshot(name) {
  const dir = process.env.BROWSER_TEST_SCREENSHOTS;
  if (dir) await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}

test('signed_in_user_sees_a_jwt_whose_claims_match_the_policy', async () => {
  await page.click('#signin-alice');
  await page.waitForSelector('#result[data-client-id="alice"]');
  await screenshot('signed-in');

  // The token the page received, verified independently with the key secret.
  const token = (await page.locator('#token').textContent()).trim();
  const { header, payload } = jwt.verify(token, DEV_KEY_SECRET, { algorithms: ['HS256'], complete: true });
  assert.equal(header.kid, DEV_KEY_NAME);

  // What dev/policy.json gives alice (sub alice, name Alice, org acme, no roles).
  const alice = { sub: 'alice', name: 'Alice', org: 'acme' };
  const capability = {};
  for (const [resource, ops] of Object.entries(DEV_POLICY.capability)) capability[fill(resource, alice)] = ops;
  assert.equal(payload['x-ably-clientId'], fill(DEV_POLICY.clientId, alice));
  assert.equal(payload['x-ably-capability'], canonical(capability));
  assert.equal(payload['x-ably-revocation-key'], fill(DEV_POLICY.revocationKey, alice));
  for (const [resource, template] of Object.entries(DEV_POLICY.channelClaims)) {
    assert.deepEqual(JSON.parse(payload[`ably.channel.${resource}`]), JSON.parse(fill(template, alice)));
  }
  for (const [resource, rate] of Object.entries(DEV_POLICY.rateLimits)) {
    assert.equal(payload[`ably.limits.publish.perAttachment.maxRate.${resource}`], rate);
  }
  assert.equal(payload.exp - payload.iat, DEV_POLICY.ttlSeconds);

  // The claims the page shows are the token's claims, each one.
  const shown = await page.$$eval('#claims tr', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.claim, r.querySelector('td').innerText])),
  );
  assert.deepEqual(Object.keys(shown).sort(), Object.keys(payload).sort());
  assert.equal(shown['x-ably-clientId'], 'alice');
  assert.deepEqual(JSON.parse(shown['x-ably-capability']), JSON.parse(payload['x-ably-capability']));
  assert.deepEqual(JSON.parse(shown['ably.channel.chat:*']), { name: 'Alice' });
  assert.equal(shown['x-ably-revocation-key'], 'acme');
  assert.match(shown.exp, new RegExp(`^${payload.exp} \\(`));

  // The expiry, counting down from the token's exp.
  assert.equal(await page.getAttribute('#countdown', 'data-exp'), String(payload.exp));
  const first = await text('#countdown');
  const m = first.match(/^expires in (?:(\d+):)?(\d+):(\d\d)$/);
  assert.ok(m, `countdown text: ${first}`);
  const remaining = Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  assert.ok(remaining > 0 && remaining <= DEV_POLICY.ttlSeconds, `remaining ${remaining} s`);
  await page.waitForFunction((before) => document.getElementById('countdown').textContent !== before, first);
  assert.match(await text('#countdown'), /^expires in (\d+:)?\d+:\d\d$/);
  assert.equal(await page.locator('#error').isHidden(), true);
});

test('expired_session_shows_401_with_ably_code_40101', async () => {
  await page.click('#expired-session');
  await page.waitForSelector('#error[data-code]');
  await screenshot('expired-session');
  assert.equal(await page.getAttribute('#error', 'data-status'), '401');
  assert.equal(await page.getAttribute('#error', 'data-code'), '40101');
  assert.equal(await text('#error-status'), '401');
  assert.equal(await text('#error-code'), '40101');
  // Read by the browser from the raw answer: only possible when CORS exposes the header.
  assert.equal(await text('#error-header-code'), '40101');
  const body = JSON.parse(await text('#error-body'));
  assert.deepEqual([body.error.code, body.error.statusCode], [40101, 401]);
  assert.match(await text('#error-message'), /expired/);
  assert.match(await text('#error-meaning'), /retrying/);
  assert.equal(await page.locator('#result').isHidden(), true);
});

test('forbidden_client_id_shows_403_with_ably_code_40102', async () => {
  await page.click('#forbidden-clientid');
  await page.waitForSelector('#error[data-code]');
  await screenshot('forbidden-client-id');
  assert.equal(await page.getAttribute('#error', 'data-status'), '403');
  assert.equal(await page.getAttribute('#error', 'data-code'), '40102');
  assert.equal(await text('#error-header-code'), '40102');
  const body = JSON.parse(await text('#error-body'));
  assert.deepEqual([body.error.code, body.error.statusCode], [40102, 403]);
  assert.match(await text('#error-meaning'), /FAILED/);
});

test('the_page_reaches_only_loopback_and_raises_no_error', async () => {
  assert.deepEqual(offLoopback, [], 'requests to non-loopback hosts');
  assert.deepEqual(demo.stray, [], 'the SDK tried to reach Ably (the loopback stand-in)');
  assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
});
