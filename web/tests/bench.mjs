// Measures the web app at 1,000 tasks in Debian's Chromium (BENCHMARKS.md, "The web app"):
// first paint of a project's Gantt, and how long a change made by someone else over REST takes
// to appear on screen (a rename; a duration change that moves a bar through the scheduler).
//
//   node tests/bench.mjs http://127.0.0.1:8080 [login] [password]
//
// against a running server (loopback only), e.g. `liveplan serve --demo` (admin/admin). Makes a
// project "Bench 1000" of 50 phases × 19 tasks (1,000 tasks, a dependency chain in each phase).

import { chromium } from 'playwright-core';

const base = process.argv[2] ?? 'http://127.0.0.1:8080';
const login = process.argv[3] ?? 'admin';
const password = process.argv[4] ?? 'admin';
const RUNS = 7;
const CHANGES = 20;
const LIMIT = 20_000;

async function call(token, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, median: Math.round(q(0.5)), p95: Math.round(q(0.95)), max: Math.round(s[s.length - 1]) };
};

async function main() {
  const auth = await fetch(base + '/api/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(login.includes('@') ? { email: login, password } : { username: login, password }),
  }).then((r) => r.json());
  const token = auth.access_token;
  const project = await call(token, 'POST', '/api/v1/projects', { name: 'Bench 1000', start_date: '2026-03-02' });
  const p = `/api/v1/projects/${project.id}`;
  const made = Date.now();
  const tasks = [];
  for (let phase = 0; phase < 50; phase++) {
    const parent = await call(token, 'POST', `${p}/tasks`, { name: `Phase ${phase}` });
    tasks.push(parent.id);
    let previous = null;
    for (let i = 0; i < 19; i++) {
      const t = await call(token, 'POST', `${p}/tasks`, { name: `Task ${phase}.${i}`, duration: 1 + (i % 5), parent_id: parent.id });
      tasks.push(t.id);
      if (previous) await call(token, 'POST', `${p}/dependencies`, { predecessor_id: previous, successor_id: t.id });
      previous = t.id;
    }
  }
  process.stderr.write(`made 1,000 tasks in ${Date.now() - made} ms\n`);

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.goto(base + '/');
  await page.getByTestId('login-username').fill(login);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('project-list').waitFor({ timeout: LIMIT });

  // First paint: a fresh load of the project's URL (token in sessionStorage) until the Gantt
  // shows its bars, measured from the navigation's start by the page's own clock.
  const paints = [];
  for (let run = 0; run < RUNS; run++) {
    await page.goto(`${base}/#/p/${project.id}/gantt`);
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=task-bar]').length > 20, null, { timeout: LIMIT, polling: 'raf' });
    paints.push(await page.evaluate(() => performance.now()));
  }
  const rows = await page.getByTestId('task-row').count();
  await page.waitForFunction(() => document.querySelector('[data-testid=connection-status]')?.textContent === 'live', null, { timeout: LIMIT });

  // A remote rename: the server's clock-free measure is the wall clock of this one machine.
  const first = await page.getAttribute('[data-testid=task-row] >> nth=1', 'data-task-id');
  const renames = [];
  for (let i = 0; i < CHANGES; i++) {
    const name = `Renamed ${i} ${Date.now()}`;
    const seen = page.waitForFunction(
      (n) => [...document.querySelectorAll('[data-testid=task-name]')].some((e) => e.textContent === n) && Date.now(),
      name,
      { timeout: LIMIT, polling: 'raf' },
    );
    const sent = Date.now();
    await call(token, 'PATCH', `${p}/tasks/${first}`, { name });
    renames.push((await (await seen).jsonValue()) - sent);
  }
  // A remote duration change: the scheduler runs, task_dates_updated moves the bar.
  const moves = [];
  for (let i = 0; i < CHANGES; i++) {
    const before = await page.getAttribute(`[data-testid=task-bar][data-task-id="${first}"]`, 'data-finish');
    const seen = page.waitForFunction(
      ([id, f]) => {
        const bar = document.querySelector(`[data-testid=task-bar][data-task-id="${id}"]`);
        return bar && bar.getAttribute('data-finish') !== f && Date.now();
      },
      [first, before],
      { timeout: LIMIT, polling: 'raf' },
    );
    const sent = Date.now();
    await call(token, 'PATCH', `${p}/tasks/${first}`, { duration: 2 + (i % 2) * 3 });
    moves.push((await (await seen).jsonValue()) - sent);
  }
  // Scrolling the 1,000 rows: time to draw the window after a jump to the bottom.
  const scroll = await page.evaluate(async () => {
    const body = document.querySelector('.gantt-body');
    const t0 = performance.now();
    body.scrollTop = body.scrollHeight;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return { ms: performance.now() - t0, rowsInDom: document.querySelectorAll('[data-testid=task-row]').length };
  });
  await browser.close();
  console.log(
    JSON.stringify(
      { tasks: tasks.length, rowsInDom: rows, firstPaintMs: stats(paints), remoteRenameMs: stats(renames), remoteDurationToBarMs: stats(moves), scrollToBottom: { ms: Math.round(scroll.ms), rowsInDom: scroll.rowsInDom } },
      null,
      1,
    ),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
