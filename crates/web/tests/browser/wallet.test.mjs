// End-to-end tests of the customer app in headless Debian Chromium.
//
// Starts `coffer serve --demo` on a free port over a temporary data
// directory, then, in Chinese and in English at phone size (360x740):
// sign up with the code the simulated SMS gateway prints on the demo
// console → KYC → link a card and top up (fee shown first) → pay a demo
// merchant by uploading a photo of its QR code → split a bill and see who
// paid → refund part of the payment from the merchant portal → history
// with the refund, the spending chart and CSV export → download my data
// (after an SMS step-up). Then a staff member signs in to the back office,
// freezes a customer, and the customer is signed out and cannot sign in
// again. Screenshots of
// the main pages go to $SCREENSHOT_DIR (docs/screenshots by default).
//
// Environment: COFFER_BIN (the coffer binary), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT_DIR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../../..');
const COFFER_BIN = process.env.COFFER_BIN || join(root, 'target/debug/coffer');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = process.env.SCREENSHOT_DIR || join(root, 'docs/screenshots');
const PHONE = { width: 360, height: 740 };
const DEMO_OWNER = { contact: '+8613800138000', password: 'jasmine tea by the window' };
const DEMO_FRIEND = { contact: '+8613900139000', password: 'jasmine tea by the window' };

let server;
let base;
let dataDir;
let output = '';
let browser;

function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

async function waitFor(check, what, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n--- server output ---\n${output.slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/// The last code the simulated SMS gateway printed for `phone`.
function lastCode(phone, after = 0) {
  const lines = output.slice(after).split('\n').filter((l) => l.includes(`[simulated sms to ${phone}]`));
  if (lines.length === 0) return null;
  const codes = lines[lines.length - 1].match(/\b\d{6}\b/g);
  return codes ? codes[codes.length - 1] : null;
}

/// A resident ID number with a valid check character (ISO 7064 MOD 11-2).
function residentId(serial) {
  const body = `11010519900307${String(serial).padStart(3, '0')}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...body].reduce((acc, digit, i) => acc + Number(digit) * weights[i], 0);
  return body + '10X98765432'[sum % 11];
}

async function api(method, path, { token, body, key } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (key) headers['idempotency-key'] = key;
  const response = await fetch(`${base}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json, text, response };
}

async function signInByApi({ contact, password }) {
  const answer = await api('POST', '/v1/auth/sessions', { body: { contact, password } });
  assert.equal(answer.status, 201, `sign-in of ${contact}: ${answer.text}`);
  return answer.json.token;
}

/// The demo merchant's static QR code as a PNG, as its till would print it.
async function merchantQrPng() {
  const token = await signInByApi(DEMO_OWNER);
  const merchants = await api('GET', '/v1/me/merchants', { token });
  const merchant = merchants.json.data.find((m) => m.status === 'active' || m.status === 'approved') || merchants.json.data[0];
  const key = await api('POST', `/v1/me/merchants/${merchant.id}/api-keys`, { token, key: `key-${Date.now()}-${Math.random()}`, body: {} });
  assert.equal(key.status, 201, key.text);
  const response = await fetch(`${base}/v1/merchant/qr?format=png`, { headers: { authorization: `Bearer ${key.json.api_key}` } });
  assert.equal(response.status, 200);
  const png = Buffer.from(await response.arrayBuffer());
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  return { png, name: merchant.display_name, apiKey: key.json.api_key };
}

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'coffer-browser-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(COFFER_BIN, ['serve', '--demo', '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, COFFER_DATA_DIR: dataDir, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout.on('data', (chunk) => { output += chunk.toString(); });
  server.stderr.on('data', (chunk) => { output += chunk.toString(); });
  await waitFor(() => output.includes('Coffer is running at') || server.exitCode !== null, 'the server to start', 180000);
  assert.equal(server.exitCode, null, `coffer serve exited:\n${output}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await waitFor(() => server.exitCode !== null, 'the server to stop', 30000).catch(() => server.kill('SIGKILL'));
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/// A phone-sized page in `locale`, failing the test on any CSP violation or
/// script error.
async function phonePage(locale) {
  const context = await browser.newContext({
    viewport: PHONE,
    deviceScaleFactor: 1,
    locale: locale === 'zh' ? 'zh-CN' : 'en-US',
    extraHTTPHeaders: { 'accept-language': locale === 'zh' ? 'zh-CN,zh;q=0.9' : 'en-US,en;q=0.9' },
  });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(message.text());
  });
  page.on('pageerror', (error) => page.problems.push(error.message));
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function submit(page, selector = 'main form button[type=submit]') {
  await Promise.all([page.waitForLoadState('domcontentloaded'), page.locator(selector).first().click()]);
}

let serial = 0;

for (const locale of ['zh', 'en']) {
  test(`the customer journey in ${locale} at phone size`, async () => {
    serial += 1;
    const page = await phonePage(locale);
    const words = locale === 'zh'
      ? { signup: '开通钱包', verified: '实名认证成功', fee: '手续费', paid: '付款成功', chart: '月度支出', lotus: 'Lotus Coffee' }
      : { signup: 'Open a wallet', verified: 'Your identity is verified', fee: 'Fee', paid: 'Paid', chart: 'Spending by month', lotus: 'Lotus Coffee' };
    const phone = `+86137${String(Date.now()).slice(-6)}${serial}${locale === 'zh' ? 1 : 2}`;

    // Sign up with the code from the simulated SMS gateway.
    const signIn = await page.goto(`${base}/signup`);
    const csp = signIn.headers()['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(signIn.headers()['cache-control'], 'no-store');
    await assert.doesNotReject(page.getByRole('heading', { name: words.signup }).waitFor());
    await page.fill('#contact', phone);
    await shot(page, `${locale}-1-sign-up`);
    const mark = output.length;
    await submit(page);
    const code = await waitFor(() => lastCode(phone, mark), 'the SMS code');
    await page.fill('#code', code);
    await page.fill('#display_name', locale === 'zh' ? '王小明' : 'Alex Wang');
    await page.fill('#password', 'a quiet walk by the lake');
    await page.check('#accept_terms');
    await submit(page);
    assert.match(page.url(), /\/kyc/);

    // KYC: name and resident ID number.
    await page.fill('#full_name', locale === 'zh' ? '王小明' : 'Alex Wang');
    await page.selectOption('#id_type', 'cn_resident');
    await page.fill('#id_number', residentId(serial * 10 + (locale === 'zh' ? 1 : 2)));
    await shot(page, `${locale}-2-kyc`);
    await submit(page);
    await assert.doesNotReject(page.getByText(words.verified).waitFor());

    // Link a card, then top up CNY 200.00 with the fee shown first.
    await page.goto(`${base}/cards`);
    await page.locator('details summary').first().click();
    await page.fill('#number', '4111 1111 1111 1111');
    await page.fill('#expiry_month', '12');
    await page.fill('#expiry_year', '2030');
    await page.fill('#cvv', '123');
    await submit(page, 'form[action="/cards/link"] button[type=submit]');
    await assert.doesNotReject(page.getByText('•••• 1111').waitFor());
    await page.goto(`${base}/topup`);
    await page.fill('#amount', '200');
    await submit(page);
    assert.equal((await page.locator('[data-testid=fee]').textContent()).trim(), locale === 'zh' ? '¥0.00' : 'CN¥0.00');
    await shot(page, `${locale}-3-top-up-review`);
    await submit(page);
    await waitFor(async () => (await page.locator('[data-status]').getAttribute('data-status').catch(() => null)) === 'succeeded', 'the top-up to succeed');
    await page.goto(`${base}/`);
    const balance = (await page.locator('[data-testid=balance]').first().textContent()).trim();
    assert.equal(balance, locale === 'zh' ? '¥200.00' : 'CN¥200.00');
    await shot(page, `${locale}-4-home`);

    // Pay a merchant by uploading a photo of its QR code.
    const qr = await merchantQrPng();
    const photo = join(dataDir, `merchant-qr-${locale}.png`);
    writeFileSync(photo, qr.png);
    await page.goto(`${base}/scan`);
    await shot(page, `${locale}-5-scan`);
    await page.setInputFiles('#photo', photo);
    await submit(page, 'form[action="/scan/image"] button[type=submit]');
    assert.equal((await page.locator('[data-testid=merchant-name]').textContent()).trim(), qr.name);
    await page.fill('#amount', '25.50');
    await shot(page, `${locale}-6-pay-merchant`);
    await submit(page);
    await assert.doesNotReject(page.getByRole('heading', { name: words.paid }).waitFor());
    assert.match(await page.locator('[data-testid=done]').textContent(), /25\.50/);

    // Split a bill with the demo friend, who then pays her share.
    await page.goto(`${base}/request`);
    await page.fill('#payers', '@lina');
    await page.fill('#amount', '120');
    await page.fill('#note', locale === 'zh' ? '火锅' : 'hotpot');
    await submit(page);
    assert.match(page.url(), /\/requests/);
    const group = page.locator('[data-testid=request-group]').first();
    assert.match(await group.textContent(), locale === 'zh' ? /已付 0\/1/ : /0 of 1 paid/);
    const friend = await signInByApi(DEMO_FRIEND);
    const incoming = await api('GET', '/v1/me/incoming-payment-requests', { token: friend });
    const request = incoming.json.data.find((r) => r.status === 'open' && r.amount === 6000);
    assert.ok(request, `no open request of 60.00 for the friend: ${incoming.text}`);
    const quote = await api('POST', '/v1/me/p2p/quotes', { token: friend, key: `quote-${locale}-${Date.now()}`, body: { request_id: request.id } });
    assert.equal(quote.status, 201, quote.text);
    const paid = await api('POST', '/v1/me/p2p/payments', {
      token: friend,
      key: `browser-${locale}-${Date.now()}`,
      body: { quote_id: quote.json.id, amount: quote.json.amount, fee: quote.json.fee, currency: quote.json.currency },
    });
    assert.equal(paid.status, 201, paid.text);
    await page.reload();
    assert.match(await page.locator('[data-testid=request-group]').first().textContent(), locale === 'zh' ? /已付 1\/1/ : /1 of 1 paid/);
    await shot(page, `${locale}-7-split-bill`);

    // Refund part of the payment from the merchant portal (signed in with the merchant's API key).
    await page.goto(`${base}/merchant`);
    await page.fill('#api_key', qr.apiKey);
    await submit(page, 'form[action="/merchant/signin"] button[type=submit]');
    assert.equal((await page.locator('[data-testid=merchant-name]').textContent()).trim(), qr.name);
    await assert.doesNotReject(page.locator('[data-testid=static-qr] svg').waitFor());
    await shot(page, `${locale}-8-merchant-portal`);
    await Promise.all([
      page.waitForLoadState('domcontentloaded'),
      page.locator('[data-testid=merchant-payments] a', { hasText: '25.50' }).first().click(),
    ]);
    await page.fill('#amount', '5.50');
    await page.fill('#reason', locale === 'zh' ? '少了一碗面' : 'one bowl short');
    await submit(page, 'form[action$="/refund"] button[type=submit]');
    assert.match(await page.locator('[data-testid=refunded]').textContent(), /5\.50/);
    await shot(page, `${locale}-9-merchant-refund`);
    const live = await page.goto(`${base}/merchant/live`);
    assert.equal(live.headers()['refresh'], '5');
    await assert.doesNotReject(page.locator('[data-testid=merchant-payments] a', { hasText: '25.50' }).first().waitFor());
    await page.goto(`${base}/merchant`);
    await submit(page, 'form[action="/merchant/signout"] button[type=submit]');
    await assert.doesNotReject(page.locator('#api_key').waitFor());

    // History: the refund, the spending chart, CSV export.
    await page.goto(`${base}/history`);
    await assert.doesNotReject(page.locator('svg.chart').waitFor());
    assert.ok(await page.locator('svg.chart rect.bar').count() >= 6);
    assert.ok(await page.locator('ul.activity li').count() >= 1);
    await assert.doesNotReject(page.locator('ul.activity li', { hasText: locale === 'zh' ? '退款' : 'Refund' }).first().waitFor());
    await shot(page, `${locale}-10-history`);
    const csv = await page.request.get(`${base}/history/export.csv`);
    assert.equal(csv.status(), 200);
    assert.match(csv.headers()['content-type'], /text\/csv/);
    assert.match(await csv.text(), /top_up/);

    // A problem with the refunded payment: reported from its receipt.
    await Promise.all([
      page.waitForLoadState('domcontentloaded'),
      page.locator('ul.activity li a', { hasText: locale === 'zh' ? '退款' : 'Refund' }).first().click(),
    ]);
    await Promise.all([page.waitForLoadState('domcontentloaded'), page.locator('[data-testid=report-problem]').click()]);
    await assert.doesNotReject(page.locator('[data-testid=about-transaction]').waitFor());
    await page.selectOption('#category', 'refund');
    await page.fill('#message', locale === 'zh' ? '退款金额不对，少了一碗面的钱。' : 'The refund looks short by one bowl of noodles.');
    await submit(page, 'form[action="/help/requests"] button[type=submit]');
    await assert.doesNotReject(page.locator('[data-testid=thread]').waitFor());
    assert.equal(await page.locator('[data-testid=state]').getAttribute('data-state'), 'open');
    await shot(page, `${locale}-10b-support-request`);

    // Download my data, after confirming it is me with an SMS code.
    await page.goto(`${base}/privacy`);
    await shot(page, `${locale}-11-privacy`);
    await submit(page, 'form[action="/privacy/export"] button[type=submit]');
    const stepUpMark = output.length;
    await submit(page, 'form[action="/stepup/start"] button[type=submit]');
    const stepUpCode = await waitFor(() => lastCode(phone, stepUpMark), 'the step-up code');
    await page.fill('#code', stepUpCode);
    await submit(page, 'form[action="/stepup/verify"] button[type=submit]');
    await submit(page, 'form[action="/privacy/export"] button[type=submit]');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid=download]').click()]);
    const archivePath = join(dataDir, `my-data-${locale}.json`);
    await download.saveAs(archivePath);
    const archive = JSON.parse(readFileSync(archivePath, 'utf8'));
    assert.equal(archive.schema, 'coffer.privacy.export/1');
    assert.doesNotMatch(JSON.stringify(archive), /a quiet walk by the lake/);

    // Help: the FAQ in this language. Me loads the passkey script (shown
    // where WebAuthn exists) without a CSP complaint.
    await page.goto(`${base}/help`);
    await assert.doesNotReject(page.locator('[data-testid=faq-pay]').waitFor());
    assert.match(await page.locator('main').innerText(), locale === 'zh' ? /在商店怎样付款/ : /How do I pay in a shop/);
    await shot(page, `${locale}-13-help`);
    // Adding a passkey starts with a step-up; then the script's control
    // appears (Chromium has WebAuthn) without a CSP complaint.
    await page.goto(`${base}/me`);
    await submit(page, 'form[action="/me/passkeys/add"] button[type=submit]');
    const passkeyMark = output.length;
    await submit(page, 'form[action="/stepup/start"] button[type=submit]');
    const passkeyCode = await waitFor(() => lastCode(phone, passkeyMark), 'the passkey step-up code');
    await page.fill('#code', passkeyCode);
    await submit(page, 'form[action="/stepup/verify"] button[type=submit]');
    await submit(page, 'form[action="/me/passkeys/add"] button[type=submit]');
    await assert.doesNotReject(page.locator('#passkey-add').waitFor());
    assert.equal(await page.locator('#passkey-unsupported').isVisible(), false);

    // A form without its CSRF token is refused.
    const forged = await page.request.post(`${base}/topup/confirm`, { form: { amount: '100', source: 'card:x' } });
    assert.equal(forged.status(), 403);

    assert.deepEqual(page.problems, [], 'console errors (CSP violations, script errors)');
    await page.context().close();
  });
}

test('the home page on a desktop, in simple mode, and the PWA pieces', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  await page.goto(`${base}/signin`);
  await page.fill('#contact', DEMO_OWNER.contact);
  await page.fill('#password', DEMO_OWNER.password);
  await submit(page);
  await assert.doesNotReject(page.locator('[data-testid=balance]').first().waitFor());
  await shot(page, 'desktop-home-demo-customer');
  await page.goto(`${base}/simple/on?back=/`);
  assert.equal(await page.locator('html.simple').count(), 1);
  assert.equal(await page.locator('nav.actions a').count(), 4);
  await shot(page, 'desktop-home-simple-mode');
  const manifest = await (await page.request.get(`${base}/manifest.webmanifest`)).json();
  assert.equal(manifest.start_url, '/');
  const worker = await (await page.request.get(`${base}/sw.js`)).text();
  assert.match(worker, /\/assets\/[0-9a-f]{12}\/app\.css/);
  // The owner opens the merchant portal from the wallet (a new API key for this browser).
  await page.goto(`${base}/me/merchants`);
  await submit(page, 'form[action$="/portal"] button[type=submit]');
  await assert.doesNotReject(page.locator('[data-testid=merchant-name]').waitFor());
  await shot(page, 'desktop-merchant-portal');
  // Closing a portal the wallet opened revokes the key it minted.
  await submit(page, 'form[action="/merchant/signout"] button[type=submit]');
  const owner = await signInByApi(DEMO_OWNER);
  const merchants = await api('GET', '/v1/me/merchants', { token: owner });
  const merchant = merchants.json.data.find((m) => m.status === 'approved');
  const keys = await api('GET', `/v1/me/merchants/${merchant.id}/api-keys`, { token: owner });
  assert.ok(keys.json.data[0].revoked_at, `the portal's key is revoked: ${keys.text}`);
  await page.goto(`${base}/paycode`);
  await assert.doesNotReject(page.locator('#paycode svg').waitFor({ timeout: 15000 }));
  await shot(page, 'desktop-payment-code');
  await context.close();
});

/// RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 seed.
function totp(base32) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of base32.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(value).padStart(6, '0');
}

test('a staff member freezes a customer, and the customer sees it', async () => {
  // A risk analyst, created with the CLI as the README says.
  const created = spawnSync(COFFER_BIN, ['staff', 'create', '--username', 'risk.wang', '--name', 'Wang Risk', '--roles', 'risk_analyst'], {
    env: { ...process.env, COFFER_DATA_DIR: dataDir, RUST_LOG: 'warn' },
    encoding: 'utf8',
  });
  assert.equal(created.status, 0, `${created.stdout}\n${created.stderr}`);
  const password = created.stdout.match(/initial password:\s+(\S.*)$/m)[1].trim();
  const seed = created.stdout.match(/authenticator seed:\s+(\S+)/)[1];

  // The demo friend is signed in on her phone.
  const customer = await phonePage('zh');
  await customer.goto(`${base}/signin`);
  await customer.fill('#contact', DEMO_FRIEND.contact);
  await customer.fill('#password', DEMO_FRIEND.password);
  await submit(customer);
  await assert.doesNotReject(customer.locator('[data-testid=balance]').first().waitFor());

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', extraHTTPHeaders: { 'accept-language': 'en-US,en;q=0.9' } });
  const staff = await context.newPage();
  await staff.goto(`${base}/staff`);
  await staff.fill('#username', 'risk.wang');
  await staff.fill('#password', password);
  await staff.fill('#code', totp(seed));
  await submit(staff, 'form[action="/staff/signin"] button[type=submit]');
  await assert.doesNotReject(staff.locator('[data-testid=queues]').waitFor());
  assert.equal(await staff.locator('a[href="/staff/kyc"]').count(), 0, 'a risk analyst does not review KYC');
  await shot(staff, 'staff-1-overview');
  await staff.goto(`${base}/staff/customers`);
  await staff.selectOption('#by', 'contact');
  await staff.fill('#q', DEMO_FRIEND.contact);
  await submit(staff, 'form[role=search] button[type=submit]');
  await shot(staff, 'staff-2-search');
  await Promise.all([staff.waitForLoadState('domcontentloaded'), staff.locator('[data-testid=search-results] a').first().click()]);
  assert.equal(await staff.locator('[data-testid=customer-status]').getAttribute('data-status'), 'active');
  const freezeMark = output.length;
  await staff.fill('#freeze-reason', 'card testing pattern');
  await submit(staff, 'form[action$="/freeze"] button[type=submit]');
  assert.equal(await staff.locator('[data-testid=customer-status]').getAttribute('data-status'), 'frozen');
  await shot(staff, 'staff-3-customer-frozen');
  await staff.goto(`${base}/staff/audit`);
  await assert.doesNotReject(staff.locator('[data-testid=audit] td', { hasText: 'customer_frozen' }).first().waitFor());
  await shot(staff, 'staff-4-audit-log');
  // The rule editor with its dry-run (read-only for this look), and the blocklist.
  await staff.goto(`${base}/staff/risk/rules`);
  await assert.doesNotReject(staff.locator('textarea[name=rules]').waitFor());
  await shot(staff, 'staff-5-risk-rules');
  await staff.goto(`${base}/staff/risk/blocklist`);
  await shot(staff, 'staff-6-blocklist');

  // The customer is told on her phone (the demo console stands in for the SMS gateway)...
  await waitFor(
    () => output.slice(freezeMark).split('\n').some((l) => l.includes(`[simulated sms to ${DEMO_FRIEND.contact}]`) && l.includes('security alert') && l.includes('frozen')),
    'the freeze alert by SMS',
    20000,
  ).catch((e) => { writeFileSync('/tmp/coffer-output.txt', output); throw e; });
  // ...her next page is the sign-in page, and signing in is refused.
  await customer.goto(`${base}/`);
  assert.match(customer.url(), /\/signin$/);
  await customer.fill('#contact', DEMO_FRIEND.contact);
  await customer.fill('#password', DEMO_FRIEND.password);
  await submit(customer);
  await assert.doesNotReject(customer.locator('p.error[role=alert]').waitFor());
  await shot(customer, 'zh-12-frozen-customer');
  assert.deepEqual(customer.problems, [], 'console errors (CSP violations, script errors)');
  await customer.context().close();
  await context.close();
});
