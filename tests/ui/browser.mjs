// browser.mjs: drives sagad's web UI in a real headless Chromium
// (Debian's, through playwright-core) against the real sagad, PostgreSQL
// and participants that tests/integration/test_ui.c started. Exits 0 when
// every check passed, 1 with the reason otherwise.
//
// Environment (from test_ui.c):
//   UI_URL         http://127.0.0.1:PORT of sagad's HTTP listener
//   UI_OPERATOR    an operator's credential;  UI_CLIENT  a client's (read only)
//   UI_PARKED      a parked saga (its compensations fail while UI_BROKEN exists)
//   UI_BROKEN      the file whose removal makes the participant's compensations succeed
//   UI_RUNNING     a running saga to cancel from the list
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   UI_SCREENSHOTS a directory: also save the screenshots of docs/ there

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env('UI_URL');
const shots = process.env.UI_SCREENSHOTS || '';
const T = 30000;

function log(msg) { process.stdout.write(`browser: ${msg}\n`); }

async function signIn(page, cred) {
  await page.goto(`${base}/`);
  // sagad asks for a credential: the dialog opens by itself.
  await page.locator('#login').waitFor({ state: 'visible', timeout: T });
  await page.fill('#login-cred', cred);
  await page.click('#login-ok');
  await page.locator('#login').waitFor({ state: 'hidden', timeout: T });
}

async function confirmWith(page, reason) {
  await page.locator('#confirm').waitFor({ state: 'visible', timeout: T });
  await page.fill('#confirm-reason', reason);
  await page.click('#confirm-ok');
  await page.locator('#confirm').waitFor({ state: 'hidden', timeout: T });
}

async function shot(page, name) {
  if (!shots) return;
  // The saga page is long (its whole history): its top 1500 pixels.
  const tall = name === 'ui-saga.png';
  if (tall) await page.setViewportSize({ width: 1360, height: 1500 });
  await page.evaluate(() => { document.querySelector('#toast').hidden = true; });
  await page.waitForTimeout(300); // let the SVG settle for the picture only
  await page.screenshot({ path: path.join(shots, name), fullPage: !tall });
  if (tall) await page.setViewportSize({ width: 1360, height: 900 });
  log(`screenshot ${name}`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // As root (CI) Chromium has no sandbox to drop into.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const errors = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) errors.push(`console: ${m.text()}`); });

    // 1. The list, as an operator: sign in, see the counts, filter to the parked saga.
    await signIn(page, env('UI_OPERATOR'));
    await page.locator('#role[data-role="operator"]').waitFor({ timeout: T });
    await page.locator('#sagas tbody tr[data-id]').first().waitFor({ timeout: T });
    await page.locator('[data-count="failed"] b').filter({ hasText: /^[1-9]/ }).waitFor({ timeout: T });
    await shot(page, 'ui-list.png');
    await page.selectOption('#filters select[name="state"]', 'failed');
    await page.click('#filters button[type="submit"]');
    await page.waitForFunction(() => location.hash.includes('state=failed'));
    const rows = page.locator('#sagas tbody tr[data-id]');
    await rows.first().waitFor({ timeout: T });
    const ids = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.id));
    assert.deepEqual(ids, [env('UI_PARKED')], `the state filter shows the parked saga only, got ${ids}`);
    log('list filtered to the parked saga');

    // 2. Its page: the unwind shows the compensation that failed.
    await page.click(`#sagas a[href="#/saga/${env('UI_PARKED')}"]`);
    await page.locator('#parked').waitFor({ timeout: T });
    await page.locator('#unwind li[data-result="failed"]').first().waitFor({ timeout: T });
    const tid = await page.textContent('#trace-id');
    assert.match(tid, /^[0-9a-f]{32}$/, `a trace id is shown, got ${tid}`);
    await page.locator('#steps').waitFor();
    await shot(page, 'ui-saga.png');
    log('saga page shows the parked unwind');

    // 3. Fix the participant, retry the compensation from the page, see the saga end compensated.
    fs.unlinkSync(env('UI_BROKEN'));
    assert.ok(await page.locator('#parked [data-action="retry"]:not([disabled])').count() >= 1,
      'the parked card offers a retry');
    // Each compensation that failed is retried from the page; the saga
    // parks again until every one has been (a parallel branch each).
    const done = page.locator('#saga-state [data-state="compensated"]');
    const retry = page.locator('#steps [data-action="retry"]:not([disabled])');
    for (let round = 0; round < 6 && await done.count() === 0; round++) {
      await Promise.race([done.waitFor({ timeout: 60000 }), retry.first().waitFor({ timeout: 60000 })]);
      if (await done.count() > 0) break;
      await retry.first().click();
      await confirmWith(page, 'the refund service is fixed (browser test)');
      await page.locator('#toast').filter({ hasText: 'done' }).waitFor({ timeout: T });
    }
    await page.locator('#saga-state [data-state="compensated"]').waitFor({ timeout: 60000 });
    const undone = await page.locator('#unwind li[data-result="undone"]').count();
    assert.ok(undone >= 2, `the unwind lists the steps undone, got ${undone}`);
    await page.locator('#history').filter({ hasText: 'the refund service is fixed' }).waitFor({ timeout: T });
    log('retry from the saga page: the saga ended compensated');

    // 4. Cancel from the list: select the running saga, cancel with a reason.
    await page.goto(`${base}/ui/#/sagas?state=running`);
    const run = page.locator(`#sagas tr[data-id="${env('UI_RUNNING')}"] input[type="checkbox"]`);
    await run.waitFor({ timeout: T });
    await run.check();
    await page.click('[data-bulk="cancel"]');
    await confirmWith(page, 'customer asked to stop (browser test)');
    await page.locator('#toast').filter({ hasText: 'cancel: 1 done' }).waitFor({ timeout: T });
    await page.goto(`${base}/ui/#/saga/${env('UI_RUNNING')}`);
    await page.locator('#saga-state [data-state="compensating"], #saga-state [data-state="compensated"]').first().waitFor({ timeout: T });
    log('cancel from the list: the saga compensates');

    // 5. Participants page.
    await page.goto(`${base}/ui/#/participants`);
    await page.locator('#participants tr[data-participant="pA"]').waitFor({ timeout: T });
    await shot(page, 'ui-participants.png');
    log('participants page');

    // 6. A read-only (client) principal: buttons disabled, and the server refuses anyway.
    const ctx2 = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    const ro = await ctx2.newPage();
    ro.on('pageerror', (e) => errors.push(`page error (client): ${e.message}`));
    await signIn(ro, env('UI_CLIENT'));
    await ro.locator('#role[data-role="client"]').waitFor({ timeout: T });
    await ro.goto(`${base}/ui/#/saga/${env('UI_PARKED')}`);
    await ro.locator('#saga-id').waitFor({ timeout: T });
    const enabled = await ro.locator('button[data-action]:not([disabled])').count();
    assert.equal(enabled, 0, 'a client sees every action button disabled');
    const refused = await ro.evaluate(async (id) => {
      const res = await fetch(`/api/v1/sagas/${id}/actions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${sessionStorage.getItem('sagad.credential')}`,
          'Content-Type': 'application/json', 'X-Sagad-Request': 'ui' },
        body: JSON.stringify({ action: 'cancel', reason: 'not allowed' }),
      });
      return { status: res.status, body: await res.json() };
    }, env('UI_RUNNING'));
    assert.equal(refused.status, 403, `a client's action is refused with 403, got ${JSON.stringify(refused)}`);
    assert.match(refused.body.error.message, /operator/);
    assert.equal(await ro.evaluate(() => location.href.includes('sagad.credential') || document.cookie), '',
      'the credential is in no URL and no cookie');
    log('client role: buttons disabled, action refused with 403');
    await ctx2.close();
    if (errors.length) throw new Error(`errors in the page:\n${errors.join('\n')}`);
  } finally {
    await browser.close();
  }
}

main().then(() => { log('ok'); process.exit(0); }, (e) => {
  process.stderr.write(`browser: FAILED: ${e.stack || e}\n`);
  process.exit(1);
});
