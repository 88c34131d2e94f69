// Drives the web app in real Chromium (Debian's /usr/bin/chromium through playwright-core;
// never a downloaded browser) against a running liveplan, for crates/server/tests/web_app.rs.
//
// Input: the JSON in LIVEPLAN_WEB_TEST: {base, project, password, users: {a, b, viewer}: each
// {login, id}, whiteboard, screenshots}. Output: one JSON line per finished step, then
// {"type":"done", ...} with what the test checks on the server afterwards. Any failure prints
// {"type":"error"} and exits 1. Every wait is bounded.

import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.env.LIVEPLAN_WEB_TEST ?? '{}');
const WAIT = 15_000;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const step = (name, extra = {}) => out({ type: 'step', name, ...extra });

function fail(message) {
  throw new Error(message);
}

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
  } catch {
    fail(`timed out waiting for ${what}`);
  }
}

const statusIs = (page, state, who) =>
  waitFor(
    page,
    (s) => document.querySelector('[data-testid=connection-status]')?.textContent === s,
    state,
    `${who} to be ${state}`,
  );

const rowNamed = (page, name, who) =>
  waitFor(
    page,
    (n) => [...document.querySelectorAll('[data-testid=task-name]')].some((e) => e.textContent === n),
    name,
    `${who} to show the task "${name}"`,
  );

async function signIn(context, user) {
  const page = await context.newPage();
  page.on('pageerror', (e) => out({ type: 'pageerror', user: user.login, message: e.message }));
  await page.goto(`${cfg.base}/`);
  await page.getByTestId('login-username').fill(user.login);
  await page.getByTestId('login-password').fill(user.password ?? cfg.password);
  await page.getByTestId('login-submit').click();
  await page.locator(`[data-testid=project-link][data-project-id="${cfg.project}"]`).click({ timeout: WAIT });
  await page.getByTestId('task-row').first().waitFor({ timeout: WAIT });
  return page;
}

async function taskIdNamed(page, name) {
  return page.evaluate(
    (n) =>
      [...document.querySelectorAll('[data-testid=task-row]')]
        .find((r) => r.querySelector('[data-testid=task-name]')?.textContent === n)
        ?.getAttribute('data-task-id') ?? null,
    name,
  );
}

async function barOf(page, id) {
  return page.evaluate((i) => {
    const b = document.querySelector(`[data-testid=task-bar][data-task-id="${i}"]`);
    return b ? { start: b.getAttribute('data-start'), finish: b.getAttribute('data-finish'), critical: b.getAttribute('data-critical') } : null;
  }, id);
}

async function cardColumn(page, id) {
  return page.evaluate(
    (i) => document.querySelector(`[data-testid=board-card][data-task-id="${i}"]`)?.closest('[data-testid=board-column]')?.getAttribute('data-status') ?? null,
    id,
  );
}

async function main() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: 60_000,
  });
  const done = {};
  try {
    const viewport = { width: 1280, height: 720 };
    const ctxA = await browser.newContext({ viewport });
    const ctxB = await browser.newContext({ viewport });

    // A wrong password shows the server's refusal on the form.
    const refused = await ctxA.newPage();
    await refused.goto(`${cfg.base}/`);
    await refused.getByTestId('login-username').fill(cfg.users.a.login);
    await refused.getByTestId('login-password').fill('not-the-password');
    await refused.getByTestId('login-submit').click();
    await refused.getByTestId('login-error').waitFor({ state: 'visible', timeout: WAIT });
    const loginError = (await refused.getByTestId('login-error').textContent()) ?? '';
    if (!loginError.trim()) fail('the login error is empty');
    await refused.close();
    step('login refused', { error: loginError });

    const a = await signIn(ctxA, cfg.users.a);
    let b = await signIn(ctxB, cfg.users.b);
    await statusIs(a, 'live', 'A');
    await statusIs(b, 'live', 'B');
    step('signed in', { rows: await a.getByTestId('task-row').count() });

    // Presence: each sees the other.
    const avatar = (id) => `[data-testid=presence-avatar][data-user-id="${id}"]`;
    await waitFor(a, (s) => !!document.querySelector(s), avatar(cfg.users.b.id), 'A to see B online');
    await waitFor(b, (s) => !!document.querySelector(s), avatar(cfg.users.a.id), 'B to see A online');
    step('presence appears');

    // A adds a task; B sees it, and its bar once the server has scheduled it.
    await a.getByTestId('new-task-name').fill('Added by A');
    await a.getByTestId('new-task-submit').click();
    await rowNamed(b, 'Added by A', 'B');
    const added = await taskIdNamed(b, 'Added by A');
    await waitFor(b, (i) => !!document.querySelector(`[data-testid=task-bar][data-task-id="${i}"]`), added, 'B to see the new bar');
    done.added = added;
    step('task added live', { id: added });

    // B renames a task in place; A sees the new name.
    const target = await taskIdNamed(b, cfg.rename);
    await b.locator(`[data-testid=task-row][data-task-id="${target}"] [data-testid=task-name]`).dblclick();
    await b.keyboard.press('Control+A');
    await b.keyboard.type('Renamed by B');
    await b.keyboard.press('Enter');
    await rowNamed(a, 'Renamed by B', 'A');
    done.renamed = target;
    step('rename live');

    // A lengthens a task: the scheduler's task_dates_updated moves B's bars without a reload.
    const longer = await taskIdNamed(a, cfg.lengthen);
    const before = await barOf(b, longer);
    await a.locator(`[data-testid=task-row][data-task-id="${longer}"] [data-testid=task-duration]`).fill('9');
    await a.locator(`[data-testid=task-row][data-task-id="${longer}"] [data-testid=task-duration]`).press('Enter');
    await waitFor(
      b,
      ([i, f]) => {
        const bar = document.querySelector(`[data-testid=task-bar][data-task-id="${i}"]`);
        return bar && bar.getAttribute('data-finish') !== f;
      },
      [longer, before.finish],
      "B's bar to move",
    );
    const after = await barOf(b, longer);
    step('bars move live', { before, after });
    done.lengthened = longer;
    await a.screenshot({ path: `${cfg.screenshots}/gantt.png` });

    // The board: A drags a card to "in progress"; B sees it there.
    await a.getByTestId('view-board').click();
    await b.getByTestId('view-board').click();
    const card = a.locator(`[data-testid=board-card][data-task-id="${added}"]`);
    await card.waitFor({ timeout: WAIT });
    await card.dragTo(a.locator('[data-testid=board-column][data-status="in_progress"]'), { timeout: WAIT });
    await waitFor(
      b,
      (i) => document.querySelector(`[data-testid=board-card][data-task-id="${i}"]`)?.closest('[data-testid=board-column]')?.getAttribute('data-status') === 'in_progress',
      added,
      'B to see the card moved',
    );
    done.moved = added;
    step('card moved live', { column: await cardColumn(b, added) });
    await a.screenshot({ path: `${cfg.screenshots}/board.png` });

    // Presence leaving: B closes its tab; A sees B go; B comes back.
    await b.close();
    await waitFor(a, (s) => !document.querySelector(s), avatar(cfg.users.b.id), 'A to see B leave');
    step('presence leaves');
    b = await signIn(ctxB, cfg.users.b);
    await statusIs(b, 'live', 'B');
    await waitFor(a, (s) => !!document.querySelector(s), avatar(cfg.users.b.id), 'A to see B again');
    step('presence returns');

    // Offline: A loses the network while B edits; back online, A catches up without a reload.
    await a.getByTestId('view-gantt').click();
    await b.getByTestId('view-gantt').click();
    await a.evaluate(() => (window.__noReload = 'still here'));
    await ctxA.setOffline(true);
    await statusIs(a, 'offline', 'A');
    const offlineNames = ['Offline one', 'Offline two', 'Offline three'];
    for (const name of offlineNames) {
      await b.getByTestId('new-task-name').fill(name);
      await b.getByTestId('new-task-submit').click();
      await rowNamed(b, name, 'B');
    }
    const renameWhileAway = await taskIdNamed(b, 'Renamed by B');
    await b.locator(`[data-testid=task-row][data-task-id="${renameWhileAway}"] [data-testid=task-name]`).dblclick();
    await b.keyboard.press('Control+A');
    await b.keyboard.type('Renamed while A was away');
    await b.keyboard.press('Enter');
    await rowNamed(b, 'Renamed while A was away', 'B');
    await a.waitForTimeout(300);
    const missedWhileOffline = await a.evaluate(
      (names) => names.filter((n) => [...document.querySelectorAll('[data-testid=task-name]')].some((e) => e.textContent === n)),
      offlineNames,
    );
    if (missedWhileOffline.length) fail(`A saw ${missedWhileOffline} while offline`);
    await ctxA.setOffline(false);
    await statusIs(a, 'live', 'A');
    for (const name of [...offlineNames, 'Renamed while A was away']) await rowNamed(a, name, 'A');
    if ((await a.evaluate(() => window.__noReload)) !== 'still here') fail('A reloaded');
    const countA = await a.getByTestId('task-row').count();
    const countB = await b.getByTestId('task-row').count();
    if (countA !== countB) fail(`A shows ${countA} rows, B ${countB}`);
    done.offline = offlineNames;
    step('offline and back, nothing missed', { rows: countA });

    // A whiteboard: A draws a stroke, B sees it; B's cursor shows on A's canvas.
    await a.getByTestId('view-whiteboards').click();
    await b.getByTestId('view-whiteboards').click();
    await a.locator(`[data-testid=whiteboard-link][data-whiteboard-id="${cfg.whiteboard}"]`).click({ timeout: WAIT });
    await b.locator(`[data-testid=whiteboard-link][data-whiteboard-id="${cfg.whiteboard}"]`).click({ timeout: WAIT });
    const canvasA = a.getByTestId('whiteboard-canvas');
    await canvasA.waitFor({ timeout: WAIT });
    await waitFor(a, () => document.querySelector('.wb-status')?.textContent === 'connected', null, 'A on the whiteboard');
    await waitFor(b, () => document.querySelector('.wb-status')?.textContent === 'connected', null, 'B on the whiteboard');
    const box = await canvasA.boundingBox();
    await a.mouse.move(box.x + 100, box.y + 100);
    await a.mouse.down();
    for (let i = 1; i <= 10; i++) await a.mouse.move(box.x + 100 + i * 20, box.y + 100 + i * 8);
    await a.mouse.up();
    await waitFor(b, () => document.querySelector('[data-testid=whiteboard-canvas]')?.dataset.elements === '1', null, 'B to see the stroke');
    step('whiteboard stroke live');
    const boxB = await b.getByTestId('whiteboard-canvas').boundingBox();
    await b.mouse.move(boxB.x + 300, boxB.y + 200);
    await b.mouse.move(boxB.x + 320, boxB.y + 210);
    await waitFor(a, (i) => !!document.querySelector(`[data-testid=whiteboard-cursor][data-user-id="${i}"]`), cfg.users.b.id, "A to see B's cursor");
    step('remote cursor');
    await a.screenshot({ path: `${cfg.screenshots}/whiteboard.png` });

    // A viewer sees everything and can change nothing; a forced write shows the server's error.
    const ctxV = await browser.newContext({ viewport });
    const v = await signIn(ctxV, cfg.users.viewer);
    await statusIs(v, 'live', 'the viewer');
    await rowNamed(v, 'Renamed while A was away', 'the viewer');
    // The viewer's SSE stream makes them present (CONTRACT §6): A sees them online.
    await waitFor(a, (s) => !!document.querySelector(s), avatar(cfg.users.viewer.id), 'A to see the viewer online');
    if (!(await v.getByTestId('new-task-name').isDisabled())) fail('the viewer can type a new task');
    if (!(await v.getByTestId('new-task-submit').isDisabled())) fail('the viewer can add a task');
    const durations = await v.locator('[data-testid=task-duration]:not([disabled])').count();
    if (durations) fail(`the viewer can change ${durations} durations`);
    const first = v.getByTestId('task-name').first();
    await first.dblclick();
    if (await v.locator('[data-testid=task-name-input]').count()) fail('the viewer can rename');
    // Live for the viewer too (over SSE): A's rename reaches it.
    await a.getByTestId('view-gantt').click();
    // The Gantt renders its rows after the switch: wait for them before reading one's id.
    await rowNamed(a, 'Offline one', 'A, back on the Gantt');
    const liveRename = await taskIdNamed(a, 'Offline one');
    await a.locator(`[data-testid=task-row][data-task-id="${liveRename}"] [data-testid=task-name]`).dblclick();
    await a.keyboard.press('Control+A');
    await a.keyboard.type('Seen by the viewer');
    await a.keyboard.press('Enter');
    await rowNamed(v, 'Seen by the viewer', 'the viewer');
    await v.getByTestId('view-board').click();
    await v.getByTestId('board-card').first().waitFor({ timeout: WAIT });
    const draggable = await v.locator('[data-testid=board-card][draggable=true]').count();
    if (draggable) fail(`the viewer can drag ${draggable} cards`);
    await v.getByTestId('view-gantt').click();
    await v.getByTestId('new-task-name').waitFor({ timeout: WAIT });
    await v.evaluate(() => {
      for (const el of document.querySelectorAll('[data-testid=new-task-name], [data-testid=new-task-submit]')) el.disabled = false;
    });
    await v.getByTestId('new-task-name').fill('Forced by the viewer');
    await v.getByTestId('new-task-submit').click();
    await v.getByTestId('error-message').waitFor({ state: 'visible', timeout: WAIT });
    const error = await v.getByTestId('error-message').textContent();
    if (!error || !error.trim()) fail('the error message is empty');
    step('viewer cannot change anything', { error });
    done.viewerError = error;
    await ctxV.close();
    await ctxA.close();
    await ctxB.close();
  } finally {
    await browser.close();
  }
  out({ type: 'done', ...done });
}

const guard = setTimeout(() => {
  out({ type: 'error', message: 'the browser test ran over 240 s' });
  process.exit(1);
}, 240_000);
main()
  .then(() => {
    clearTimeout(guard);
    process.exit(0);
  })
  .catch((e) => {
    out({ type: 'error', message: String(e && e.stack ? e.stack : e) });
    process.exit(1);
  });
