// The "Needs attention" section at scale, in headless Chromium: 1,000 channels of which 80 fail in 4
// ways (20 each), classified by the daemon itself. Started by run.sh against its own simulator and
// daemon, which passes BASE, SIM, ADMIN_TOKEN and OUT.
//
// 1. Provisions the simulator (5 tenants, one app each, 1,000 users) and adds 1,000 channels through
//    the admin API; authorizes every one through the real flow (authorize → the simulator's
//    /authorize → inboxd's callback), 16 at a time.
// 2. Breaks 4 tenants of 20 channels each: Conditional Access (AADSTS53003 on the token endpoint →
//    blocked), a revoked grant (invalid_grant AADSTS50173 → needs_reauthorization), an expired client
//    secret (AADSTS7000222 → blocked, another remedy), Graph throttling with a one-hour Retry-After
//    (→ backing_off, the calm group); moves the simulator's clock past the access tokens' lifetime so
//    the next poll must refresh, and "Poll now"s the 80.
// 3. Logs in and checks that the first screen, above the table, shows exactly those 4 groups with
//    code, count 20 and a remedy; clicks "Make sign-in links for all" on the needs_reauthorization
//    group, checks the 20 links, opens them (the first by hand: a 303 to the simulator; the second in
//    the browser, through the sign-in to the callback; the rest by fetch) and sees the group gone.
import { chromium } from 'playwright-core';
import { randomUUID } from 'node:crypto';
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
const OUT = env('OUT');
const TIMEOUT_MS = 30_000;
const CONCURRENCY = 16;
const TOTAL = 1000;
const PER_FAILURE = 20;

const started = Date.now();
const secs = () => ((Date.now() - started) / 1000).toFixed(1);
const step = (what) => console.log(`• [${secs()} s] ${what}`);
function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function sim(method, path, body) {
  const res = await fetch(`${SIM}/_sim/${path}`, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  check(res.ok, `simulator ${method} ${path} answered ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

async function api(method, path, body) {
  const res = await fetch(`${BASE}/api/${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body ? { 'Content-Type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  check(res.ok, `inboxd ${method} /api/${path} answered ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

// Runs `work` on every item, `CONCURRENCY` at a time; answers the results in order.
async function pool(items, work) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  return results;
}

// Every channel, paged as the API pages (at most 1,000 a page).
async function allChannels() {
  const channels = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api('GET', `channels?limit=1000&offset=${offset}`);
    channels.push(...page.channels);
    if (channels.length >= page.total || page.channels.length === 0) return channels;
  }
}

// Polls `probe` until it answers a truthy value; fails with what `describe` says it saw last.
async function until(what, probe, describe) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const seen = await probe();
    if (seen.ok) return seen;
    if (Date.now() > deadline) throw new Error(`${what} did not happen in ${TIMEOUT_MS / 1000} s; last seen ${describe(seen)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// The authorization through the real flow, without a browser: the simulator's /authorize signs in
// the login_hint and redirects to inboxd's callback, which must say it worked.
async function authorizeThroughSimulator(id) {
  const { authorization_url: url } = await api('POST', `channels/${id}/authorize`);
  check(url.startsWith(`${SIM}/`), `the authorization URL is not the simulator's: ${url}`);
  await followSignIn(url, id);
}
async function followSignIn(url, what) {
  const res = await fetch(url);
  const body = await res.text();
  check(res.ok && new URL(res.url).pathname === '/oauth/callback' && body.includes('class="ok"'),
    `the sign-in of ${what} ended at ${res.url} with ${res.status}: ${body.slice(0, 300)}`);
}

// The four ways to fail, one tenant each; `expect` is what the daemon must classify them as.
const failures = [
  {
    key: 'ca', label: 'Conditional Access', status: 'blocked', code: 'AADSTS53003',
    fault: (t) => ({ kind: 'aadsts', code: 53003, endpoints: ['token'], tenant: t.tenant_id }),
  },
  {
    key: 'revoked', label: 'Revoked grant', status: 'needs_reauthorization', code: 'AADSTS50173',
    fault: (t) => ({ kind: 'revoked_grant', tenant: t.tenant_id }),
  },
  {
    key: 'secret', label: 'Expired secret', status: 'blocked', code: 'AADSTS7000222',
    fault: (t) => ({ kind: 'expired_secret', endpoints: ['token'], tenant: t.tenant_id }),
  },
  {
    key: 'throttled', label: 'Throttled', status: 'backing_off', code: null, // the daemon's code for a 429
    fault: (t) => ({ kind: 'throttle', retry_after: 3600, endpoints: ['graph'], tenant: t.tenant_id }),
  },
];

const profile = mkdtempSync(join(tmpdir(), 'inboxd-chromium-'));
let context;
let page;
const problems = [];
let summary = '';

try {
  // --- 1. 1,000 channels, all authorized ----------------------------------------------------------
  step(`provisioning the simulator: 5 tenants, ${TOTAL} users`);
  const tenants = [{ key: 'healthy', users: TOTAL - failures.length * PER_FAILURE }, ...failures.map((f) => ({ key: f.key, users: PER_FAILURE, failure: f }))];
  for (const t of tenants) {
    t.tenant_id = randomUUID();
    t.client_id = randomUUID();
    t.client_secret = `Sim8Q~problems-${t.key}-${randomUUID()}`;
    t.domain = `${t.key}.example`;
    await sim('POST', 'tenants', { tenant_id: t.tenant_id, domains: [t.domain] });
    await sim('POST', 'apps', {
      tenant_id: t.tenant_id, client_id: t.client_id, client_secret: t.client_secret,
      redirect_uris: [`${BASE}/oauth/callback`],
    });
  }
  const mailboxes = tenants.flatMap((t) => Array.from({ length: t.users }, (_, i) => ({
    tenant: t, mailbox: `user${String(i + 1).padStart(4, '0')}@${t.domain}`,
    name: `${t.failure ? t.failure.label : 'Healthy'} ${String(i + 1).padStart(4, '0')}`,
  })));
  check(mailboxes.length === TOTAL, `${mailboxes.length} mailboxes, not ${TOTAL}`);
  await pool(mailboxes, (m) => sim('POST', 'users', { tenant_id: m.tenant.tenant_id, upn: m.mailbox, display_name: m.name }));

  step(`adding ${TOTAL} channels through the admin API, ${CONCURRENCY} at a time`);
  await pool(mailboxes, async (m) => {
    const channel = await api('POST', 'channels', {
      tenant_id: m.tenant.tenant_id, client_id: m.tenant.client_id, client_secret: m.tenant.client_secret,
      mailbox: m.mailbox, name: m.name,
    });
    m.id = channel.id;
  });

  step(`authorizing all ${TOTAL} through the simulator's sign-in`);
  await pool(mailboxes, (m) => authorizeThroughSimulator(m.id));
  await until('every channel active after its first poll', async () => {
    const channels = await allChannels();
    const notYet = channels.filter((c) => c.status !== 'active' || !c.last_success_at);
    return { ok: channels.length === TOTAL && notYet.length === 0, total: channels.length, notYet };
  }, (s) => `${s.total} channels, ${s.notYet.length} not active yet (e.g. ${JSON.stringify(s.notYet[0])})`);

  // --- 2. 80 of them fail in 4 ways, classified by the daemon ---------------------------------------
  step('injecting 4 faults, one tenant each; the access tokens expire; "Poll now" on the 80');
  for (const f of failures) await sim('POST', 'faults', f.fault(tenants.find((t) => t.key === f.key)));
  // The simulator's clock passes the access tokens' lifetime: the next poll must refresh.
  await sim('POST', 'clock', { advance_secs: 3700 });
  const failing = mailboxes.filter((m) => m.tenant.failure);
  await pool(failing, (m) => api('POST', `channels/${m.id}/poll`));
  const classified = await until('the 80 classified', async () => {
    const byId = new Map((await allChannels()).map((c) => [c.id, c]));
    const wrong = failing.filter((m) => byId.get(m.id)?.status !== m.tenant.failure.status);
    return { ok: wrong.length === 0, byId, wrong };
  }, (s) => `${s.wrong.length} not classified as expected, e.g. ${JSON.stringify(s.byId.get(s.wrong[0].id))}`);
  // What the daemon called each failure: one code per tenant (the throttled one's is the daemon's).
  for (const f of failures) {
    const codes = new Set(failing.filter((m) => m.tenant.failure === f).map((m) => classified.byId.get(m.id).last_error?.code));
    check(codes.size === 1, `${f.label}: the 20 channels have codes ${[...codes].join(', ')}`);
    const [code] = codes;
    check(code && (f.code === null || code === f.code), `${f.label}: code ${code}, expected ${f.code}`);
    f.seenCode = code;
  }
  const healthy = [...classified.byId.values()].filter((c) => c.status === 'active').length;
  check(healthy === TOTAL - failing.length, `${healthy} channels active, not ${TOTAL - failing.length}`);

  // --- 3. the first screen ------------------------------------------------------------------------
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`script error: ${err.message}`));

  step('logging in and opening the status page');
  await page.goto(`${BASE}/`);
  await page.fill('#token', ADMIN_TOKEN);
  const loadStarted = Date.now();
  await Promise.all([page.waitForURL(`${BASE}/`), page.getByRole('button', { name: 'Log in' }).click()]);
  const loadMs = Date.now() - loadStarted;
  const section = page.locator('section#problems');
  check(await section.isVisible(), 'no "Needs attention" section');
  const sectionBox = await section.boundingBox();
  const tableBox = await page.locator('table#channels').boundingBox();
  check(sectionBox && tableBox && sectionBox.y + sectionBox.height <= tableBox.y,
    `the section is not above the table: section ${JSON.stringify(sectionBox)}, table ${JSON.stringify(tableBox)}`);
  check(sectionBox.y < 900, `the section starts below the first screen, at ${sectionBox.y} px`);
  const groups = await section.locator('div.group').evaluateAll((els) => els.map((el) => ({
    status: el.dataset.groupStatus,
    code: el.dataset.code,
    count: Number(el.dataset.count),
    remedy: el.querySelector('p.remedy')?.innerText.replace(/^What to do:\s*/, '').trim() ?? '',
    heading: el.querySelector('h3')?.innerText ?? '',
    calm: el.classList.contains('calm'),
  })));
  check(groups.length === failures.length, `${groups.length} groups, not ${failures.length}: ${JSON.stringify(groups)}`);
  for (const f of failures) {
    const group = groups.find((g) => g.status === f.status && g.code === f.seenCode);
    check(group, `no group for ${f.label} (${f.status}, ${f.seenCode}): ${JSON.stringify(groups)}`);
    check(group.count === PER_FAILURE, `${f.label}: count ${group.count}, not ${PER_FAILURE}`);
    check(group.heading.includes(f.seenCode) && group.heading.includes(`${PER_FAILURE} channels`), `${f.label}: heading "${group.heading}"`);
    check(group.remedy.length > 20, `${f.label}: no remedy ("${group.remedy}")`);
    check(group.calm === (f.status === 'backing_off'), `${f.label}: calm is ${group.calm}`);
  }
  const remedies = new Set(groups.map((g) => g.remedy));
  check(remedies.size === groups.length, `the 4 groups share remedies: ${JSON.stringify([...remedies])}`);
  // The most urgent first: blocked, then needs_reauthorization, then the calm backing_off.
  const order = groups.map((g) => g.status);
  check(order.indexOf('backing_off') === order.length - 1 && order.indexOf('needs_reauthorization') === 2,
    `the groups are out of order: ${order.join(', ')}`);
  check((await section.locator('h2').innerText()).includes('60 channels'), `the heading does not count the 60 that need someone: ${await section.locator('h2').innerText()}`);
  await page.screenshot({ path: join(OUT, 'problems-first-screen.png'), fullPage: true });
  await page.screenshot({ path: join(OUT, 'problems-viewport.png') });
  writeFileSync(join(OUT, 'problems-first-screen.html'), await page.content());

  // --- 4. one bulk action: sign-in links for the group ----------------------------------------------
  step('"Make sign-in links for all" on the needs_reauthorization group');
  const revoked = failures.find((f) => f.key === 'revoked');
  const group = section.locator(`div.group[data-group-status="needs_reauthorization"][data-code="${revoked.seenCode}"]`);
  const primary = group.locator('form.bulk button.primary');
  check((await primary.getAttribute('value')) === 'reauthorize', `the primary button is ${await primary.getAttribute('value')}`);
  await Promise.all([page.waitForURL(`${BASE}/ui/bulk`), primary.click()]);
  const links = await page.locator('table#links input.link').evaluateAll((els) => els.map((el) => el.value));
  check(links.length === PER_FAILURE, `${links.length} links, not ${PER_FAILURE}`);
  check(new Set(links).size === links.length, 'the links are not all different');
  const bad = links.filter((l) => !l.startsWith(`${BASE}/sign-in/`));
  check(bad.length === 0, `links not on ${BASE}/sign-in/: ${bad.join(' ')}`);
  const rowIds = await page.locator('table#links tbody tr').evaluateAll((els) => els.map((el) => el.dataset.channelId));
  const revokedIds = new Set(failing.filter((m) => m.tenant.failure === revoked).map((m) => m.id));
  check(rowIds.every((id) => revokedIds.has(id)), 'the links page lists channels outside the group');
  await page.screenshot({ path: join(OUT, 'problems-links.png'), fullPage: true });

  step('a link is a 303 to the simulator\'s sign-in');
  const first = await fetch(links[0], { redirect: 'manual' });
  const location = first.headers.get('location') || '';
  check(first.status === 303 && location.startsWith(`${SIM}/`) && new URL(location).pathname.endsWith('/oauth2/v2.0/authorize'),
    `the first link answered ${first.status} to ${location}`);
  await followSignIn(location, 'the first link');

  step('another opens in the browser: the simulator, then the callback');
  const visited = [];
  page.on('request', (req) => { if (req.isNavigationRequest()) visited.push(new URL(req.url()).origin); });
  await Promise.all([page.waitForURL((url) => url.pathname === '/oauth/callback'), page.goto(links[1])]);
  check(visited.includes(new URL(SIM).origin), `the browser never went to the simulator: ${visited.join(' ')}`);
  check((await page.locator('h1.ok').count()) === 1, `the callback page says ${await page.locator('h1').innerText()}`);
  await page.screenshot({ path: join(OUT, 'problems-signed-in.png'), fullPage: true });

  step('the other 18 owners sign in; the group is gone');
  await pool(links.slice(2), (l, i) => followSignIn(l, `link ${i + 3}`));
  await until('the 20 active again', async () => {
    const byId = new Map((await allChannels()).map((c) => [c.id, c]));
    const notYet = [...revokedIds].filter((id) => byId.get(id)?.status !== 'active' || !byId.get(id)?.last_success_at);
    return { ok: notYet.length === 0, notYet };
  }, (s) => `${s.notYet.length} not active`);
  await page.goto(`${BASE}/`);
  const left = await page.locator('section#problems div.group').evaluateAll((els) => els.map((el) => el.dataset.groupStatus));
  check(!left.includes('needs_reauthorization') && left.length === failures.length - 1, `groups left: ${left.join(', ')}`);
  await page.screenshot({ path: join(OUT, 'problems-after-reauthorization.png'), fullPage: true });

  check(problems.length === 0, `the browser reported problems:\n${problems.join('\n')}`);
  summary = `problems scenario passed in ${secs()} s: ${TOTAL} channels, ${failing.length} failing in ${failures.length} groups `
    + `(${failures.map((f) => `${f.status} ${f.seenCode}`).join('; ')}), status page in ${loadMs} ms, `
    + `${links.length} sign-in links, the group re-authorized`;
  console.log(summary);
} catch (err) {
  if (page) await page.screenshot({ path: join(OUT, 'problems-failure.png'), fullPage: true }).catch(() => {});
  console.error(`problems scenario failed after ${secs()} s${page ? ` at ${page.url()}` : ''}: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
