#!/usr/bin/env node
// Development server for the browser demo: serves examples/web on 127.0.0.1 (a different
// origin from the functions, so the browser does CORS with credentials), the ably-js browser
// build, and a stand-in for your app's login backend.
//
//   make dev                       # terminal 1: the functions on http://127.0.0.1:9000
//   make demo                      # terminal 2: this page on http://127.0.0.1:8080
//   node examples/web/serve.mjs --port 8080 --auth-url http://127.0.0.1:9000
//
// POST /dev/session {"sub":"alice","expired":false} answers a session token, as your backend
// would after a user logs in: an HS256 JWT signed with the DEVELOPMENT caller secret from
// dev/dev.env. The secret stays in this process; the page only ever sees session tokens.
// Development only: that secret is public. Nothing here runs in a deployment.
//
// No dependencies beyond Node.js itself; ably-js is the UMD build from an installed `ably`
// package (tests/e2e/node_modules after `make tools`): no CDN, nothing leaves the machine.

import http from 'node:http';
import { createHmac } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const ABLY_BUILDS = [
  path.join(ROOT, 'tests', 'e2e', 'node_modules', 'ably', 'build', 'ably.js'),
  path.join(ROOT, 'tests', 'browser', 'node_modules', 'ably', 'build', 'ably.js'),
  path.join(HERE, 'node_modules', 'ably', 'build', 'ably.js'),
];
const STATIC = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
};
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** KEY=VALUE lines of an env file. */
function readEnvFile(file) {
  const env = {};
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || !line.includes('=')) continue;
    const i = line.indexOf('=');
    env[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return env;
}

const b64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 session token, as the app's backend would sign it. */
export function sessionToken({ sub, name, org = 'acme', roles = [], expired = false }, secret, now = Math.floor(Date.now() / 1000)) {
  const iat = expired ? now - 7200 : now;
  // A session longer than the policy's token TTL: tokens are bound to the session (boundToSession).
  const exp = expired ? now - 3600 : now + 8 * 3600;
  const claims = { sub, name: name || sub.charAt(0).toUpperCase() + sub.slice(1), org, roles, iat, exp };
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', secret).update(input).digest('base64url');
  return { token: `${input}.${signature}`, claims };
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 16 * 1024) req.destroy(new Error('body too large'));
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

/**
 * Start the demo server. `authBase` is where the functions answer (make dev: http://127.0.0.1:9000).
 * Resolves with { url, port, stray, close() }; `stray` lists requests to unknown paths (e.g. an
 * SDK trying to reach Ably at the loopback endpoint the page configures).
 */
export function startDemoServer({
  port = 8080,
  host = '127.0.0.1',
  authBase = 'http://127.0.0.1:9000',
  envFile = path.join(ROOT, 'dev', 'dev.env'),
} = {}) {
  if (!LOOPBACK.has(host)) throw new Error(`the demo server binds to loopback only, not ${host}: it mints development sessions`);
  const secret = readEnvFile(envFile).CALLER_HS256_SECRET;
  if (!secret) throw new Error(`CALLER_HS256_SECRET is missing from ${envFile}`);
  const ablyBuild = ABLY_BUILDS.find((p) => existsSync(p));
  const stray = [];

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, `http://${host}`);
    try {
      if (req.method === 'GET' && STATIC[url.pathname]) {
        const [file, type] = STATIC[url.pathname];
        return send(res, 200, type, readFileSync(path.join(HERE, file)));
      }
      if (req.method === 'GET' && url.pathname === '/vendor/ably.js') {
        if (!ablyBuild) return send(res, 404, 'text/plain', 'ably-js is not installed: run `make tools` (npm ci in tests/e2e)');
        return send(res, 200, 'text/javascript; charset=utf-8', readFileSync(ablyBuild));
      }
      if (req.method === 'GET' && url.pathname === '/config.json') {
        const { port: ownPort } = server.address();
        return send(res, 200, 'application/json', JSON.stringify({
          authUrl: `${authBase.replace(/\/+$/, '')}/auth/jwt`,
          // The SDK never needs Ably's servers here (it only obtains tokens); should it try,
          // it reaches this server (a 404, listed in `stray`), never the internet.
          ablyEndpoint: host,
          ablyPort: ownPort,
        }));
      }
      if (req.method === 'POST' && url.pathname === '/dev/session') {
        const body = JSON.parse((await readBody(req)) || '{}');
        const sub = String(body.sub || '').trim();
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(sub)) return send(res, 400, 'application/json', '{"error":"sub: letters, digits, _ or -"}');
        const roles = Array.isArray(body.roles) ? body.roles.map(String) : [];
        const session = sessionToken({ sub, roles, expired: body.expired === true }, secret);
        return send(res, 200, 'application/json', JSON.stringify(session));
      }
      stray.push(`${req.method} ${url.pathname}`);
      return send(res, 404, 'text/plain', 'not found');
    } catch (e) {
      return send(res, 500, 'text/plain', String(e.message || e));
    }
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      resolve({
        url: `http://${host}:${actual}`,
        port: actual,
        stray,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

// ------------------------------------------------------------------ command line

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
  };
  const port = Number(opt('--port', '8080'));
  const authBase = opt('--auth-url', 'http://127.0.0.1:9000');
  const demo = await startDemoServer({ port, authBase });
  console.log(`Browser demo on ${demo.url}  (functions: ${authBase}; start them with \`make dev\`)`);
  console.log('Development only: /dev/session signs session tokens with the public dev caller secret.');
  if (!ABLY_BUILDS.some((p) => existsSync(p))) console.log('ably-js not found: run `make tools` first.');
}
