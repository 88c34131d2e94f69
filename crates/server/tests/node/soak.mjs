// The soak (issue 20; a script, not CI): a liveplan server of its own, subscribers over the
// native WebSocket, SSE and the Bryntum socket that drop their connections at random (TCP cut,
// no close frame) and come back, resuming where they were, while a writer commits tasks. At
// the end every WebSocket and SSE subscriber must hold exactly the log's seqs from where it
// started (0 lost, 0 duplicated), every Bryntum subscriber exactly the project's tasks, and
// the server's memory is sampled every 10 s.
//
// Usage, from this folder after `npm ci`, with a release build:
//   node soak.mjs --binary ../../../../target/release/liveplan [--minutes 10] [--clients 20]
//                 [--writes-per-second 10] [--tasks 300] [--server-args '--log-max-events-per-stream 5000']
// `--clients` is per dialect. `--tasks N` makes N tasks first and then only renames them, so
// the project keeps one size and memory can be compared over the run (without it, one write
// in ten adds a task). `--server-args` are added to `liveplan serve`'s. Prints one JSON
// document at the end.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const binary = args.binary ?? '../../../../target/release/liveplan';
const minutes = Number(args.minutes ?? 10);
const perDialect = Number(args.clients ?? 20);
const writesPerSecond = Number(args['writes-per-second'] ?? 10);
const users = Number(args.users ?? 20);
const fixedTasks = Number(args.tasks ?? 0);
const serverArgs = (args['server-args'] ?? '').split(' ').filter(Boolean);
const ADMIN = { email: 'soak-admin@example.test', password: 'soak-admin-password' };
const PASSWORD = 'soak-user-password';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const between = (low, high) => low + Math.random() * (high - low);

// ---- the server ----
const dataDir = mkdtempSync(join(tmpdir(), 'liveplan-soak-'));
const server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...serverArgs], {
  env: { ...process.env, LIVEPLAN_ADMIN_EMAIL: ADMIN.email, LIVEPLAN_ADMIN_PASSWORD: ADMIN.password, RUST_LOG: 'warn' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const base = await new Promise((resolve, reject) => {
  let text = '';
  const timer = setTimeout(() => reject(new Error('the server did not start in 60 s')), 60_000);
  server.stdout.on('data', (chunk) => {
    text += chunk;
    const found = text.match(/listening on (http:\/\/[0-9.:]+)/);
    if (found) {
      clearTimeout(timer);
      resolve(found[1]);
    }
  });
  server.on('exit', (code) => reject(new Error(`the server exited: ${code}`)));
});
const wsBase = base.replace('http', 'ws');
const rssKiB = () => Number(readFileSync(`/proc/${server.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);

async function call(method, path, token, body, headers = {}) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const response = await fetch(base + path, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 429) {
      await sleep(1000 + attempt * 500);
      continue;
    }
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
  throw new Error(`${method} ${path}: still rate limited`);
}
const login = async (email, password) => (await call('POST', '/api/v1/auth/login', null, { email, password })).access_token;
const ticket = async (token) => (await call('POST', '/api/v1/ws/ticket/', token, {})).ticket;

// ---- setup: a project, members ----
const admin = await login(ADMIN.email, ADMIN.password);
const project = (await call('POST', '/api/v1/projects', admin, { name: 'Soak' })).id;
const tokens = [];
for (let i = 0; i < users; i++) {
  const email = `soak-${i}@example.test`;
  const user = await call('POST', '/api/v1/users', admin, { email, password: PASSWORD, display_name: `Soak ${i}` });
  await call('POST', `/api/v1/projects/${project}/members`, admin, { user_id: user.id, role: 100 });
  tokens.push(await login(email, PASSWORD));
}
const head = async () => (await call('GET', `/api/v1/projects/${project}/log?since=0&limit=1`, admin)).latest_seq;

let stopping = false;
const totals = { reconnects: 0, refusedReconnects: 0 };

// ---- a subscriber that keeps seqs: native WebSocket and SSE ----
class SeqClient {
  constructor(kind, token) {
    this.kind = kind;
    this.token = token;
    this.seqs = [];
    this.duplicates = 0;
    this.last = null;
    this.first = null;
    this.resyncs = 0;
  }
  got(seq) {
    if (seq === null || seq === undefined) return;
    if (this.last !== null && seq <= this.last) this.duplicates++;
    else this.seqs.push(seq);
    this.last = Math.max(this.last ?? 0, seq);
  }
}

async function runWs(client) {
  client.first = await head();
  client.last = client.first;
  while (!stopping) {
    const t = await ticket(client.token);
    const socket = new WebSocket(`${wsBase}/ws/v1/projects/${project}/?ticket=${t}&since=${client.last}`);
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.event_type === 'resync_required') client.resyncs++;
      client.got(frame.seq);
    });
    socket.on('error', () => {});
    const closed = new Promise((resolve) => socket.on('close', resolve));
    await Promise.race([sleep(between(1000, 6000)), closed]);
    socket.terminate();
    await closed;
    totals.reconnects++;
  }
}

async function runSse(client) {
  client.first = await head();
  client.last = client.first;
  while (!stopping) {
    const abort = new AbortController();
    const response = await fetch(`${base}/api/v1/projects/${project}/events`, {
      headers: { authorization: `Bearer ${client.token}`, 'last-event-id': String(client.last) },
      signal: abort.signal,
    }).catch(() => null);
    if (!response || response.status !== 200) {
      totals.refusedReconnects++;
      await sleep(500);
      continue;
    }
    const reading = (async () => {
      const decoder = new TextDecoder();
      let pending = '';
      for await (const chunk of response.body) {
        pending += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const message = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const id = message.match(/^id: ?(\d+)$/m);
          const data = message.match(/^data: ?(.*)$/m);
          if (data && JSON.parse(data[1]).type === 'resync_required') client.resyncs++;
          if (id) client.got(Number(id[1]));
        }
      }
    })().catch(() => {});
    await Promise.race([sleep(between(1000, 6000)), reading]);
    abort.abort();
    await reading;
    totals.reconnects++;
  }
}

// ---- a Bryntum subscriber: a dataset, then its project_change revisions ----
class BryntumClient {
  constructor(token) {
    this.token = token;
    this.tasks = new Map();
    this.duplicates = 0;
  }
}

async function runBryntum(client) {
  while (!stopping) {
    const t = await ticket(client.token);
    const socket = new WebSocket(`${wsBase}/ws/v1/bryntum`);
    const seenRevisions = new Set();
    socket.on('open', () => socket.send(JSON.stringify({ command: 'login', data: { ticket: t } })));
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.command === 'login' && !message.error) {
        socket.send(JSON.stringify({ command: 'dataset', data: { project } }));
      } else if (message.command === 'dataset' && message.data?.dataset) {
        const walk = (rows) => (rows ?? []).forEach((row) => { client.tasks.set(String(row.id), row.name); walk(row.children); });
        client.tasks = new Map();
        walk(message.data.dataset.tasksData);
      } else if (message.command === 'project_change') {
        for (const revision of message.data?.revisions ?? []) {
          if (seenRevisions.has(revision.revision)) client.duplicates++;
          seenRevisions.add(revision.revision);
          for (const added of revision.changes?.tasks?.added ?? []) client.tasks.set(String(added.id), added.name);
          for (const updated of revision.changes?.tasks?.updated ?? []) {
            if ('name' in updated) client.tasks.set(String(updated.id), updated.name);
          }
          for (const removed of revision.changes?.tasks?.removed ?? []) client.tasks.delete(String(removed.id));
        }
      }
    });
    socket.on('error', () => {});
    const closed = new Promise((resolve) => socket.on('close', resolve));
    await Promise.race([sleep(between(1000, 6000)), closed]);
    socket.terminate();
    await closed;
    totals.reconnects++;
  }
}

// ---- the writer: one task created in ten writes, the others rename a task, so the project
// stays about the same size and memory can be compared over the run ----
let written = 0;
let writeFailures = 0;
let writing = true;
const created = [];
for (let i = 0; i < fixedTasks; i++) {
  created.push((await call('POST', `/api/v1/projects/${project}/tasks`, admin, { name: `fixed-${i}`, duration: 1 })).id);
}
async function writer() {
  const every = 1000 / writesPerSecond;
  while (writing) {
    const started = Date.now();
    try {
      if (created.length === 0 || (fixedTasks === 0 && written % 10 === 0)) {
        created.push((await call('POST', `/api/v1/projects/${project}/tasks`, admin, { name: `soak-${written}`, duration: 1 })).id);
      } else {
        const id = created[Math.floor(Math.random() * created.length)];
        await call('PATCH', `/api/v1/projects/${project}/tasks/${id}`, admin, { name: `soak-${written}` });
      }
      written++;
    } catch {
      writeFailures++;
    }
    await sleep(Math.max(0, every - (Date.now() - started)));
  }
}

// ---- the run ----
const wsClients = [];
const sseClients = [];
const bryntumClients = [];
const running = [];
for (let i = 0; i < perDialect; i++) {
  const token = tokens[i % users];
  const ws = new SeqClient('ws', token);
  const sse = new SeqClient('sse', token);
  const bryntum = new BryntumClient(token);
  wsClients.push(ws);
  sseClients.push(sse);
  bryntumClients.push(bryntum);
  running.push(runWs(ws), runSse(sse), runBryntum(bryntum));
}
const writes = writer();
const memory = [];
const started = Date.now();
while (Date.now() - started < minutes * 60_000) {
  await sleep(10_000);
  memory.push({ seconds: Math.round((Date.now() - started) / 1000), rss_kib: rssKiB(), reconnects: totals.reconnects });
  process.stderr.write(`${JSON.stringify(memory.at(-1))}\n`);
}
// The writer stops first: the subscribers' last connections then span its last writes.
writing = false;
await writes;
await sleep(2000);
stopping = true;
await Promise.all(running);

// Everyone reads once more from where it stopped, until it is at the log's head.
const last = await head();
async function runWsOnce(client) {
  const t = await ticket(client.token);
  const socket = new WebSocket(`${wsBase}/ws/v1/projects/${project}/?ticket=${t}&since=${client.last}`);
  socket.on('message', (data) => client.got(JSON.parse(data.toString()).seq));
  socket.on('error', () => {});
  const closed = new Promise((resolve) => socket.on('close', resolve));
  const deadline = Date.now() + 10_000;
  while (client.last < last && Date.now() < deadline) await sleep(50);
  socket.terminate();
  await closed;
}
for (const client of wsClients) await runWsOnce(client);
for (const client of sseClients) {
  const deadline = Date.now() + 10_000;
  const abort = new AbortController();
  const response = await fetch(`${base}/api/v1/projects/${project}/events`, {
    headers: { authorization: `Bearer ${client.token}`, 'last-event-id': String(client.last) },
    signal: abort.signal,
  });
  const decoder = new TextDecoder();
  let pending = '';
  try {
    for await (const chunk of response.body) {
      pending += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = pending.indexOf('\n\n')) >= 0) {
        const id = pending.slice(0, end).match(/^id: ?(\d+)$/m);
        pending = pending.slice(end + 2);
        if (id) client.got(Number(id[1]));
      }
      if (client.last >= last || Date.now() > deadline) break;
    }
  } catch {}
  abort.abort();
}
const restTasks = new Map();
for (let offset = 0; ; offset += 500) {
  const page = await call('GET', `/api/v1/projects/${project}/tasks?limit=500&offset=${offset}`, admin);
  const rows = Array.isArray(page) ? page : page.items ?? page.data ?? [];
  rows.forEach((row) => restTasks.set(String(row.id), row.name));
  if (rows.length < 500) break;
}
// The Bryntum subscribers as their last connection left them: every task with its latest name
// (a revision applied to a dataset, or in the dataset it loaded).
const bryntumFinal = bryntumClients.map((client) => ({
  missing: [...restTasks.keys()].filter((id) => !client.tasks.has(id)).length,
  stale: [...restTasks].filter(([id, name]) => client.tasks.has(id) && client.tasks.get(id) !== name).length,
  extra: [...client.tasks.keys()].filter((id) => !restTasks.has(id)).length,
  duplicates: client.duplicates,
}));

const seqReport = (clients) => {
  let lost = 0;
  let duplicated = 0;
  let resyncs = 0;
  for (const client of clients) {
    const have = new Set(client.seqs);
    for (let seq = client.first + 1; seq <= last; seq++) if (!have.has(seq)) lost++;
    duplicated += client.duplicates;
    resyncs += client.resyncs;
  }
  return { clients: clients.length, lost, duplicated, resyncs };
};
const summary = {
  minutes,
  fixed_tasks: fixedTasks,
  server_args: serverArgs.join(' '),
  writes: written,
  write_failures: writeFailures,
  log_head: last,
  reconnects: totals.reconnects,
  refused_reconnects: totals.refusedReconnects,
  native_ws: seqReport(wsClients),
  sse: seqReport(sseClients),
  bryntum: {
    clients: bryntumFinal.length,
    missing_tasks: bryntumFinal.reduce((n, c) => n + c.missing, 0),
    stale_names: bryntumFinal.reduce((n, c) => n + c.stale, 0),
    extra_tasks: bryntumFinal.reduce((n, c) => n + c.extra, 0),
    duplicated_revisions: bryntumFinal.reduce((n, c) => n + c.duplicates, 0),
  },
  rss_kib: { first: memory[0]?.rss_kib, min: Math.min(...memory.map((m) => m.rss_kib)), max: Math.max(...memory.map((m) => m.rss_kib)), last: memory.at(-1)?.rss_kib, samples: memory },
};
console.log(JSON.stringify({ liveplan_soak: summary }));
server.kill('SIGTERM');
rmSync(dataDir, { recursive: true, force: true });
process.exit(0);
