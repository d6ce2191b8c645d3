// The browser demo: ably-js obtains an Ably JWT through `authUrl`, with the user's session
// token in `authHeaders`, and the page shows the token's claims, its expiry, and the errors.
// Plain script, no build step; `Ably` is the UMD build served at /vendor/ably.js.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  let config;
  let countdownTimer = null;

  /** The app's login: a session token from its backend (here the demo server's dev stand-in). */
  async function newSession(sub, { expired = false } = {}) {
    const res = await fetch('/dev/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sub, expired }),
    });
    if (!res.ok) throw new Error(`session: HTTP ${res.status}`);
    return (await res.json()).token;
  }

  /**
   * An ably-js client whose only way to a token is the authUrl. It is a REST client and only
   * obtains tokens (auth.authorize): it never opens a connection, and its Ably endpoint is the
   * demo server on loopback, so nothing leaves the machine. In your app, drop endpoint/port/tls
   * and use Ably.Realtime with the same authUrl and authHeaders.
   */
  function ablyClient(sessionToken, clientId) {
    return new Ably.Rest({
      authUrl: config.authUrl,
      authHeaders: { Authorization: `Bearer ${sessionToken}` },
      ...(clientId ? { clientId } : {}),
      endpoint: config.ablyEndpoint,
      port: config.ablyPort,
      tls: false,
      logLevel: 0,
    });
  }

  function decodeJwt(token) {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return JSON.parse(json);
  }

  function reset(status) {
    $('status').textContent = status;
    $('result').classList.add('hidden');
    $('error').classList.add('hidden');
    for (const a of ['data-client-id']) $('result').removeAttribute(a);
    for (const a of ['data-status', 'data-code', 'data-header-code']) $('error').removeAttribute(a);
    if (countdownTimer) clearInterval(countdownTimer);
    countdownTimer = null;
  }

  function formatRemaining(seconds) {
    if (seconds <= 0) return 'expired';
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const mm = h ? String(m).padStart(2, '0') : String(m);
    return `expires in ${h ? h + ':' : ''}${mm}:${String(s).padStart(2, '0')}`;
  }

  function showValue(name, value) {
    if (name === 'iat' || name === 'exp') return `${value} (${new Date(value * 1000).toISOString()})`;
    if (typeof value === 'string' && /^[[{]/.test(value)) {
      try {
        return JSON.stringify(JSON.parse(value), null, 1);
      } catch {
        /* not JSON: shown as is */
      }
    }
    return typeof value === 'string' ? value : JSON.stringify(value);
  }

  function showToken(token) {
    const claims = decodeJwt(token);
    const tbody = $('claims').querySelector('tbody');
    tbody.replaceChildren();
    for (const [name, value] of Object.entries(claims)) {
      const row = document.createElement('tr');
      row.dataset.claim = name;
      const th = document.createElement('th');
      th.textContent = name;
      const td = document.createElement('td');
      const pre = document.createElement('code');
      pre.textContent = showValue(name, value);
      td.appendChild(pre);
      row.append(th, td);
      tbody.appendChild(row);
    }
    $('token').textContent = token;
    $('client-id').textContent = claims['x-ably-clientId'] ?? '(anonymous)';
    $('result').dataset.clientId = claims['x-ably-clientId'] ?? '';
    const countdown = $('countdown');
    countdown.dataset.exp = String(claims.exp);
    const tick = () => {
      countdown.textContent = formatRemaining(claims.exp - Math.floor(Date.now() / 1000));
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    $('result').classList.remove('hidden');
  }

  function meaning(status, code) {
    if (status === 401) {
      return '401: no valid session. ably-js keeps retrying (a Realtime connection goes to DISCONNECTED ' +
        'and asks the authUrl again after 15 s, then 30 s): sign the user in again to get a fresh session token.';
    }
    if (status === 403 && code === 40102) {
      return '403 (40102): the requested clientId is not this user\'s. A connection\'s clientId never changes; ' +
        'ably-js gives up: a Realtime connection goes to FAILED and does not retry.';
    }
    if (status === 403) return '403: this user must not have a token. ably-js gives up: a Realtime connection goes to FAILED.';
    if (status >= 500) return `${status}: a fault on the server side; ably-js retries.`;
    return '';
  }

  /** The SDK's error, and the same request made with fetch to show what CORS exposes. */
  async function showError(err, sessionToken, clientId) {
    const status = err.statusCode ?? 0;
    const code = err.code ?? 0;
    $('error-status').textContent = String(status);
    $('error-code').textContent = String(code);
    $('error-message').textContent = err.message ?? String(err);
    $('error-meaning').textContent = meaning(status, code);
    const url = config.authUrl + (clientId ? `?clientId=${encodeURIComponent(clientId)}` : '');
    let headerCode = '(not readable)';
    let body = '';
    try {
      const res = await fetch(url, {
        headers: { Authorization: `Bearer ${sessionToken}` },
        credentials: 'include',
        cache: 'no-store',
      });
      headerCode = res.headers.get('X-Ably-ErrorCode') ?? '(not exposed by CORS)';
      body = await res.text();
    } catch (e) {
      headerCode = `(request failed: ${e.message})`;
    }
    $('error-header-code').textContent = headerCode;
    $('error-body').textContent = body;
    const panel = $('error');
    panel.dataset.status = String(status);
    panel.dataset.code = String(code);
    panel.dataset.headerCode = headerCode;
    panel.classList.remove('hidden');
  }

  async function scenario(label, { sub = 'alice', expired = false, clientId = null } = {}) {
    reset(`${label}…`);
    let sessionToken = '';
    try {
      sessionToken = await newSession(sub, { expired });
      const client = ablyClient(sessionToken, clientId);
      const details = await client.auth.authorize();
      showToken(details.token);
      $('status').textContent = `${label}: token received.`;
    } catch (err) {
      $('status').textContent = `${label}: the authUrl refused.`;
      await showError(err, sessionToken, clientId);
    }
  }

  async function main() {
    config = await (await fetch('/config.json', { cache: 'no-store' })).json();
    $('auth-url').textContent = config.authUrl;
    $('signin-alice').addEventListener('click', () => scenario('Signed in as alice'));
    $('expired-session').addEventListener('click', () => scenario('Expired session', { expired: true }));
    $('forbidden-clientid').addEventListener('click', () =>
      scenario('alice asking for clientId "mallory"', { clientId: 'mallory' }),
    );
    document.body.dataset.ready = 'true';
  }

  main().catch((e) => {
    $('status').textContent = `The demo could not start: ${e.message}`;
  });
})();
