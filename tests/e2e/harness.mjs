// Test harness: runs the workspace's functions under `cargo lambda watch` on a free loopback
// port, as `make dev` does, and stops the whole process tree afterwards.
//
// Routes come from [workspace.metadata.lambda.watch.router] in the root Cargo.toml (read via
// `cargo metadata`), settings from dev/dev.env plus per-test overrides. The harness builds
// each routed function with `cargo build --bin NAME` first (the same command line that
// cargo-lambda's `cargo run --bin NAME` then finds up to date), so start-up does not compile.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEV_ENV_FILE = path.join(ROOT, 'dev', 'dev.env');
export const DEV_POLICY = JSON.parse(readFileSync(path.join(ROOT, 'dev', 'policy.json'), 'utf8'));

// Inherited settings that would change the functions' configuration are dropped: the env
// file (and the test's overrides) alone decide.
const CONFIG_PREFIXES = ['ABLY_', 'CALLER_', 'TOKEN_POLICY', 'TOKEN_ROUTES_POLICY', 'CORS_', 'SECRET_CACHE_', 'AWS_ENDPOINT_URL'];

// Waiting for readiness may include waiting for another cargo build to release the target
// directory lock; this bounds start-up, it measures nothing.
const READY_DEADLINE_MS = 5 * 60 * 1000;

/** KEY=VALUE lines of an env file (comments and blank lines skipped). */
export function readEnvFile(file) {
  const env = {};
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || !line.includes('=')) continue;
    const i = line.indexOf('=');
    env[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return env;
}

export const DEV_ENV = readEnvFile(DEV_ENV_FILE);
export const DEV_KEY_NAME = DEV_ENV.ABLY_API_KEY.slice(0, DEV_ENV.ABLY_API_KEY.indexOf(':'));
export const DEV_KEY_SECRET = DEV_ENV.ABLY_API_KEY.slice(DEV_ENV.ABLY_API_KEY.indexOf(':') + 1);
export const DEV_CALLER_SECRET = DEV_ENV.CALLER_HS256_SECRET;

/** Run `fn`, which must reject with an ably-js ErrorInfo; returns the error. */
export async function ablyError(fn) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected the SDK to report an error');
}

/** The watch router: { "/auth/jwt": "issue-jwt", ... }. */
export function watchRoutes() {
  const out = spawnSync('cargo', ['metadata', '--no-deps', '--format-version', '1'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (out.status !== 0) throw new Error(`cargo metadata failed:\n${out.stderr}`);
  const router = JSON.parse(out.stdout).metadata?.lambda?.watch?.router;
  if (!router || Object.keys(router).length === 0) {
    throw new Error('no [workspace.metadata.lambda.watch.router] in Cargo.toml');
  }
  return router;
}

function functionsOf(router) {
  const names = [];
  for (const target of Object.values(router)) {
    for (const name of typeof target === 'string' ? [target] : target.map((t) => t.function)) {
      if (!names.includes(name)) names.push(name);
    }
  }
  return names;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** All descendants of `pid` (via /proc), children first in no particular order. */
function descendants(pid) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  const out = [];
  const stack = [pid];
  while (stack.length) {
    for (const child of children.get(stack.pop()) ?? []) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

/** Running (a zombie waiting to be reaped counts as ended). */
function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** GET `url` with node:http (no keep-alive), resolving with { status, headers } or null on a socket error. */
function probe(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Start `cargo lambda watch` with the dev settings (plus `env` overrides) on a free loopback
 * port. Resolves once every routed function has answered one request itself.
 * Returns { baseUrl, port, routes, logs(), stop() }.
 */
export async function startWatch({ env = {} } = {}) {
  const venvBin = path.join(ROOT, '.tools', 'venv', 'bin');
  if (!existsSync(path.join(venvBin, 'cargo-lambda'))) {
    throw new Error('cargo-lambda is not installed in .tools/venv: run `make tools` first');
  }
  const routes = watchRoutes();
  for (const name of functionsOf(routes)) {
    const build = spawnSync('cargo', ['build', '--bin', name], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    if (build.status !== 0) throw new Error(`cargo build --bin ${name} failed`);
  }

  const port = await freePort();
  const childEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !CONFIG_PREFIXES.some((p) => k.startsWith(p))),
  );
  childEnv.PATH = `${venvBin}${path.delimiter}${process.env.PATH}`;
  childEnv.CARGO_TERM_COLOR = 'never';
  const args = [
    'lambda', 'watch',
    '--invoke-address', '127.0.0.1',
    '--invoke-port', String(port),
    '--disable-cors', // the functions' own CORS is under test, as behind API Gateway
    '--ignore-changes', // other work in the tree must not restart the functions mid-test
    '--env-file', DEV_ENV_FILE,
  ];
  for (const [k, v] of Object.entries(env)) {
    if (String(v).includes(',')) throw new Error(`override ${k}: cargo-lambda splits --env-var values on commas`);
    args.push('--env-var', `${k}=${v}`);
  }

  // detached: its own process group, so that stop() can end the whole tree.
  const child = spawn('cargo', args, { cwd: ROOT, env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk) => {
    output += chunk.toString('utf8');
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });

  const stop = async () => {
    if (child.pid === undefined) return;
    // The function processes run in process groups of their own (cargo run execs them):
    // collect the whole tree first, then signal every group and process in it by id.
    const tree = [child.pid, ...descendants(child.pid)];
    for (const sig of ['SIGTERM', 'SIGKILL']) {
      for (const pid of tree) {
        for (const target of [-pid, pid]) {
          try {
            process.kill(target, sig);
          } catch {
            // already gone
          }
        }
      }
      for (let i = 0; i < 50 && tree.some(alive); i++) await sleep(100);
      if (!tree.some(alive)) break;
    }
  };
  const onExit = () => {
    for (const pid of [child.pid, ...descendants(child.pid)]) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  process.once('exit', onExit);
  // The tree runs in its own process group, out of reach of a terminal's Ctrl-C: pass it on.
  const onSignal = (sig) => {
    onExit();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const unhook = () => {
    process.removeListener('exit', onExit);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    const deadline = Date.now() + READY_DEADLINE_MS;
    for (const routePath of Object.keys(routes)) {
      // Ready when the function itself answers: every answer of ours carries Cache-Control: no-store.
      for (;;) {
        if (exited) throw new Error(`cargo lambda watch exited early (${JSON.stringify(exited)})`);
        // cargo-lambda keeps serving when the function's `cargo run` fails: stop waiting then.
        const failed = /ERROR command exited code=\d+/.exec(output);
        if (failed) throw new Error(`a function failed to start under cargo lambda watch (${failed[0]})`);
        const res = await probe(baseUrl + routePath);
        if (res && res.headers['cache-control'] === 'no-store') break;
        if (Date.now() > deadline) throw new Error(`no answer from ${routePath} in time`);
        await sleep(res ? 500 : 100);
      }
    }
  } catch (e) {
    await stop();
    unhook();
    throw new Error(`${e.message}\n--- cargo lambda watch output ---\n${output.slice(-8000)}`);
  }

  return {
    baseUrl,
    port,
    routes,
    logs: () => output,
    stop: async () => {
      await stop();
      unhook();
    },
  };
}

/**
 * A loopback HTTP server standing where Ably's REST host would be: any request to it means
 * the SDK tried to reach Ably. Point the SDK at it with { endpoint: '127.0.0.1', port, tls: false }.
 */
export async function startAblyTrap() {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"e2e tests must not reach Ably","code":50000,"statusCode":500}}');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
