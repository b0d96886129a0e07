// Drives headless Chromium through inboxd's status page against the simulator. Started by run.sh,
// which passes BASE, SIM, ADMIN_TOKEN, TENANT, CLIENT_ID, CLIENT_SECRET, MAILBOX and OUT.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: start this through tests/browser/run.sh`);
  return value;
};
const BASE = env('BASE');
const SIM = env('SIM');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const TENANT = env('TENANT');
const CLIENT_ID = env('CLIENT_ID');
const CLIENT_SECRET = env('CLIENT_SECRET');
const MAILBOX = env('MAILBOX');
const OUT = env('OUT');
const TIMEOUT_MS = 30_000;

const step = (what) => console.log(`• ${what}`);
function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function sim(method, path, body) {
  const res = await fetch(`${SIM}/_sim/${path}`, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  check(res.ok, `simulator ${method} ${path} answered ${res.status}: ${await res.text()}`);
}

const profile = mkdtempSync(join(tmpdir(), 'inboxd-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(TIMEOUT_MS);
const problems = [];
page.on('console', (msg) => {
  // HTTP error statuses are asserted where they are expected (wrong token, forged form); what
  // must never happen is a CSP violation or a script error.
  if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console error: ${msg.text()}`);
});
page.on('pageerror', (err) => problems.push(`script error: ${err.message}`));

let shot = 0;
async function snap(name) {
  shot += 1;
  const file = `${String(shot).padStart(2, '0')}-${name}`;
  await page.screenshot({ path: join(OUT, `${file}.png`), fullPage: true });
  writeFileSync(join(OUT, `browser-${file}.html`), await page.content());
}

// Reloads the channel's page until `ready(detail)` holds; fails with what it saw last.
async function waitForChannel(id, what, ready) {
  const deadline = Date.now() + TIMEOUT_MS;
  let seen = '';
  for (;;) {
    await page.goto(`${BASE}/?channel=${id}`);
    const detail = page.locator('#detail');
    const state = {
      status: await detail.getAttribute('data-status'),
      lastSuccess: await page.locator('#detail-last-success time').count(),
      lastSuccessAt: (await page.locator('#detail-last-success time').count())
        ? await page.locator('#detail-last-success time').getAttribute('datetime')
        : null,
      errorCode: (await page.locator('#detail-error-code').count())
        ? await page.locator('#detail-error-code').innerText()
        : null,
      remedy: (await page.locator('#detail-remedy').count())
        ? await page.locator('#detail-remedy').innerText()
        : null,
    };
    if (ready(state)) return state;
    seen = JSON.stringify(state);
    if (Date.now() > deadline) throw new Error(`the channel did not become ${what}; last seen ${seen}`);
    await page.waitForTimeout(250);
  }
}

async function signInThroughSimulator(label) {
  // The simulator's /authorize signs in without a human and redirects to inboxd's callback.
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/oauth/callback'),
    page.getByRole('button', { name: label }).click(),
  ]);
  const title = await page.locator('h1').innerText();
  check(
    (await page.locator('h1.ok').count()) === 1,
    `the callback page says "${title}": ${await page.locator('body').innerText()}`,
  );
  await snap(`callback-${label.replace(/\W+/g, '-').toLowerCase()}`);
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/'),
    page.getByRole('link', { name: 'Open the status page' }).click(),
  ]);
}

try {
  step('an unauthenticated visit shows the login form');
  const first = await page.goto(`${BASE}/`);
  check(first.status() === 200, `GET / without a session answered ${first.status()}`);
  check(await page.locator('form#login').isVisible(), 'no login form on /');
  const csp = first.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe'), `weak CSP: ${csp}`);
  await snap('login');

  step('a wrong token is refused');
  await page.fill('#token', 'not-the-admin-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  check(await page.locator('#login-problem').isVisible(), 'a wrong token gave no message');

  step('logging in');
  await page.fill('#token', ADMIN_TOKEN);
  await Promise.all([page.waitForURL(`${BASE}/`), page.getByRole('button', { name: 'Log in' }).click()]);
  check(await page.locator('table#channels').isVisible(), 'no channel table after login');
  const cookies = await context.cookies(BASE);
  const session = cookies.find((c) => c.name === 'inboxd_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', `session cookie flags: ${JSON.stringify(session)}`);
  check(session.value !== ADMIN_TOKEN, 'the session cookie is the admin token');

  step('adding a channel');
  if (!(await page.locator('#add').evaluate((el) => el.open))) await page.locator('#add summary').click();
  check((await page.locator('#redirect-uri').textContent()) === `${BASE}/oauth/callback`, 'the add form does not show the redirect URI');
  const form = page.locator('#add form');
  await form.locator('[name=name]').fill('Support <desk> & "co"');
  await form.locator('[name=mailbox]').fill(MAILBOX);
  await form.locator('[name=tenant_id]').fill(TENANT);
  await form.locator('[name=client_id]').fill(CLIENT_ID);
  await form.locator('[name=client_secret]').fill(CLIENT_SECRET);
  await form.locator('[name=client_secret_expires_at]').fill('2030-01-31');
  await form.locator('[name=first_import]').selectOption('all');
  await snap('add-form');
  await Promise.all([
    page.waitForURL((url) => url.searchParams.get('done') === 'added'),
    form.getByRole('button', { name: 'Add channel' }).click(),
  ]);
  const id = new URL(page.url()).searchParams.get('channel');
  check(id, `no channel id after adding: ${page.url()}`);
  check((await page.locator('#detail').getAttribute('data-status')) === 'awaiting_authorization', 'a new channel is not awaiting authorization');
  check((await page.locator('#detail h2').innerText()) === 'Support <desk> & "co"', 'the name was not shown as typed (escaping)');
  check(!(await page.content()).includes(CLIENT_SECRET), 'the page shows the client secret');
  await snap('added');

  step('authorizing through the simulator sign-in');
  await signInThroughSimulator('Authorize');
  const active = await waitForChannel(id, 'active with a successful poll', (s) => s.status === 'active' && s.lastSuccess > 0);
  check(await page.locator('#detail-today').innerText() !== '0', 'no message counted today after the first poll');
  await snap('active');

  step('the listing shows it, with filter and search');
  await page.goto(`${BASE}/`);
  const row = page.locator(`tr[data-channel-id="${id}"]`);
  check((await row.getAttribute('data-status')) === 'active', 'the listing does not show the channel active');
  check((await row.locator('td.last-success time').count()) === 1, 'the listing shows no last successful poll');
  await page.selectOption('#filter-status', 'blocked'); // the script submits the filter on change
  await page.waitForURL((url) => url.searchParams.get('status') === 'blocked');
  check((await page.locator(`tr[data-channel-id="${id}"]`).count()) === 0, 'the blocked filter shows an active channel');
  await page.goto(`${BASE}/?q=${encodeURIComponent('support@')}`);
  check((await page.locator(`tr[data-channel-id="${id}"]`).count()) === 1, 'search by mailbox does not find the channel');
  await snap('listing');

  step('a Conditional Access failure shows as blocked with its remedy');
  await sim('POST', 'faults', { kind: 'aadsts', code: 53003, endpoints: ['token'], tenant: TENANT });
  // The access token expires (for the simulator), so the next poll must refresh it.
  await sim('POST', 'clock', { advance_secs: 3700 });
  await page.goto(`${BASE}/?channel=${id}`);
  await Promise.all([
    page.waitForURL((url) => url.searchParams.get('done') === 'polling'),
    page.getByRole('button', { name: 'Poll now' }).click(),
  ]);
  const blocked = await waitForChannel(id, 'blocked', (s) => s.status === 'blocked');
  check(blocked.errorCode && blocked.errorCode.includes('53003'), `the error code is ${blocked.errorCode}, not AADSTS53003`);
  check(blocked.remedy && blocked.remedy.length > 20, `no remedy shown: ${blocked.remedy}`);
  check(await page.getByRole('button', { name: 'Update auth info' }).isVisible(), 'no "Update auth info" on a blocked channel');
  await snap('blocked');
  await page.goto(`${BASE}/?status=blocked`);
  check((await page.locator(`tr[data-channel-id="${id}"] td.error`).innerText()).includes('53003'), 'the listing does not show the error code');
  await snap('listing-blocked');

  step('after the policy is fixed, "Update auth info" makes it active again');
  await sim('DELETE', 'faults');
  await page.goto(`${BASE}/?channel=${id}`);
  await signInThroughSimulator('Update auth info');
  await waitForChannel(id, 'active again', (s) => s.status === 'active' && s.lastSuccessAt !== null && s.lastSuccessAt > active.lastSuccessAt);
  await snap('active-again');

  step('the quarantine view opens');
  await page.getByRole('link', { name: 'View quarantine' }).click();
  check(await page.locator('#quarantine-empty').isVisible(), 'the quarantine view does not say it is empty');

  step('a form without the CSRF token is refused');
  const forged = await page.evaluate(async ([base, channel]) => {
    const res = await fetch(`${base}/ui/channels/${channel}/disable`, {
      method: 'POST', body: new URLSearchParams({ csrf: 'forged' }), redirect: 'manual',
    });
    return res.status;
  }, [BASE, id]);
  check(forged === 403, `a forged form answered ${forged}`);

  step('the admin API does not take the session cookie');
  const api = await page.evaluate(async (base) => (await fetch(`${base}/api/channels`)).status, BASE);
  check(api === 401, `the API answered ${api} to the page's session cookie`);

  step('logging out ends the session');
  const cookiesBefore = await context.cookies(BASE);
  await page.goto(`${BASE}/`);
  await Promise.all([page.waitForURL(`${BASE}/login`), page.getByRole('button', { name: 'Log out' }).click()]);
  check(await page.locator('form#login').isVisible(), 'no login form after logout');
  await context.addCookies(cookiesBefore);
  await page.goto(`${BASE}/`);
  check(await page.locator('form#login').isVisible(), 'the old session cookie still opens the page after logout');

  check(problems.length === 0, `the browser reported problems:\n${problems.join('\n')}`);
  step('all browser checks passed');
} catch (err) {
  await snap('failure').catch(() => {});
  console.error(`browser test failed at ${page.url()}: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
