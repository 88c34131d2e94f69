import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff';
import { canonicalFromSse, EVENT_TYPES, parseSseMessage, parseWsFrame } from './events';
import { type ConnectionState, type Environment, ProjectConnection } from './live';
import type { LiveEvent } from './events';

// A fake clock and fake sockets: the connection's logic, not the network, is under test here
// (the real server and a real browser are driven by crates/server/tests/web_app.rs).
class Clock {
  now = 0;
  private timers = new Map<number, { at: number; fn: () => void; every?: number }>();
  private next = 1;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  setInterval = (fn: () => void, ms: number) => {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn, every: ms });
    return id;
  };
  clear = (id: unknown) => {
    this.timers.delete(id as number);
  };
  advance(ms: number) {
    const end = this.now + ms;
    for (let guard = 0; guard < 10_000; guard++) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      const [id, t] = due;
      this.now = t.at;
      if (t.every) t.at += t.every;
      else this.timers.delete(id);
      t.fn();
    }
    this.now = end;
  }
  pending(): number[] {
    return [...this.timers.values()].filter((t) => !t.every).map((t) => t.at - this.now);
  }
}

class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(value: unknown) {
    this.onmessage?.({ data: JSON.stringify(value) });
  }
  drop(code: number) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

class FakeSource {
  static all: FakeSource[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: string; lastEventId: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSource.all.push(this);
  }
  close() {
    this.closed = true;
  }
  message(value: unknown, id = '') {
    this.onmessage?.({ data: JSON.stringify(value), lastEventId: id });
  }
}

const flush = () => new Promise((r) => setTimeout(r, 0));

function setup(opts: { transport?: 'websocket' | 'sse'; since?: number | null; random?: () => number } = {}) {
  FakeSocket.all = [];
  FakeSource.all = [];
  const clock = new Clock();
  let online = true;
  let onlineListener: ((o: boolean) => void) | null = null;
  const env: Environment = {
    WebSocket: FakeSocket,
    EventSource: FakeSource,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clear,
    setInterval: clock.setInterval,
    clearInterval: clock.clear,
    now: () => clock.now,
    online: () => online,
    watchOnline: (fn) => {
      onlineListener = fn;
      return () => (onlineListener = null);
    },
  };
  const events: LiveEvent[] = [];
  const states: ConnectionState[] = [];
  const resyncs: number[] = [];
  let tickets = 0;
  const conn = new ProjectConnection({
    projectId: 'p1',
    origin: 'http://127.0.0.1:8080',
    tabId: 'tab-me',
    ticket: async () => `t${++tickets}`,
    transport: opts.transport ?? 'websocket',
    since: opts.since === undefined ? 10 : opts.since,
    onEvent: (e) => events.push(e),
    onResync: async (latest) => {
      resyncs.push(latest);
    },
    onState: (s) => states.push(s),
    backoff: { baseMs: 1000, capMs: 30_000, random: opts.random ?? (() => 0.5) },
    env,
  });
  const setOnline = (v: boolean) => {
    online = v;
    onlineListener?.(v);
  };
  return { clock, conn, events, states, resyncs, setOnline };
}

const ev = (seq: number | null, type = 'task_updated', extra: Record<string, unknown> = {}) => ({
  protocol_version: 1,
  event_type: type,
  payload: { id: `task-${seq}` },
  seq,
  ...extra,
});

describe('backoff', () => {
  it('grows from 1 s to a 30 s ceiling with full jitter', () => {
    const top = (n: number) => backoffDelay(n, { baseMs: 1000, capMs: 30_000, random: () => 0.999999 });
    expect([0, 1, 2, 3, 4, 5, 6, 40].map(top)).toEqual([999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
    expect(backoffDelay(5, { baseMs: 1000, capMs: 30_000, random: () => 0 })).toBe(0);
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(3)));
    expect(spread.size).toBeGreaterThan(10);
    for (const d of spread) expect(d).toBeLessThan(8000);
  });
});

describe('event parsing', () => {
  it('knows the whole catalog and the SSE names', () => {
    expect(EVENT_TYPES.length).toBe(61);
    expect(canonicalFromSse('ticket.moved')).toBe('task_updated');
    expect(canonicalFromSse('task.dates_updated')).toBe('task_dates_updated');
    expect(canonicalFromSse('dependency.created')).toBe('dependency_created');
    expect(canonicalFromSse('member.role.updated')).toBe('member_role_changed');
    expect(canonicalFromSse('presence.join')).toBe('presence_join');
    expect(canonicalFromSse('no.such')).toBeNull();
  });
  it('reads native frames and SSE messages into one shape', () => {
    const w = parseWsFrame(JSON.stringify(ev(5, 'task_created', { tab_id: 'x', replayed: true })));
    expect(w).toEqual({
      kind: 'event',
      event: { type: 'task_created', payload: { id: 'task-5' }, seq: 5, tabId: 'x', replayed: true },
    });
    expect(parseWsFrame('{"event_type":"resync_required","payload":{"latest_seq":9},"seq":null}')).toEqual({
      kind: 'resync',
      latestSeq: 9,
    });
    expect(parseWsFrame('not json').kind).toBe('ignore');
    expect(parseWsFrame('{"event_type":"pong","payload":{},"seq":null}').kind).toBe('ignore');
    const s = parseSseMessage('{"type":"ticket.updated","data":{"id":"a","name":"n"},"tabId":null}', '12');
    expect(s.kind === 'event' && s.event.seq).toBe(12);
    expect(s.kind === 'event' && s.event.type).toBe('task_updated');
    expect(s.kind === 'event' && s.event.data).toEqual({ id: 'a', name: 'n' });
    expect(parseSseMessage('{"type":"resync_required","data":{"latest_seq":3}}', '')).toEqual({
      kind: 'resync',
      latestSeq: 3,
    });
  });
});

describe('ProjectConnection over the native socket', () => {
  it('connects with a fresh ticket and since, goes live, delivers in order without duplicates', async () => {
    const t = setup();
    t.conn.start();
    await flush();
    expect(FakeSocket.all).toHaveLength(1);
    expect(FakeSocket.all[0].url).toBe('ws://127.0.0.1:8080/ws/v1/projects/p1/?ticket=t1&since=10');
    FakeSocket.all[0].open();
    expect(t.conn.state).toBe('live');
    FakeSocket.all[0].frame(ev(11));
    FakeSocket.all[0].frame(ev(11));
    FakeSocket.all[0].frame(ev(9));
    FakeSocket.all[0].frame(ev(12));
    FakeSocket.all[0].frame(ev(null, 'presence_join'));
    expect(t.events.map((e) => e.seq)).toEqual([11, 12, null]);
    expect(t.conn.position).toBe(12);
  });

  it('suppresses echoes of its own tab but keeps the scheduler outputs and advances the position', async () => {
    const t = setup();
    t.conn.start();
    await flush();
    const s = FakeSocket.all[0];
    s.open();
    s.frame(ev(11, 'task_updated', { tab_id: 'tab-me' }));
    s.frame(ev(12, 'task_dates_updated', { tab_id: 'tab-me' }));
    s.frame(ev(13, 'task_updated', { tab_id: 'tab-other' }));
    expect(t.events.map((e) => [e.seq, e.type])).toEqual([
      [12, 'task_dates_updated'],
      [13, 'task_updated'],
    ]);
    expect(t.conn.position).toBe(13);
  });

  it('reconnects with backoff and full jitter, resuming from the last seq with a new ticket', async () => {
    const t = setup({ random: () => 0.5 });
    t.conn.start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].frame(ev(11));
    FakeSocket.all[0].drop(1006);
    expect(t.conn.state).toBe('reconnecting');
    expect(t.clock.pending()).toEqual([500]);
    t.clock.advance(499);
    await flush();
    expect(FakeSocket.all).toHaveLength(1);
    t.clock.advance(1);
    await flush();
    expect(FakeSocket.all).toHaveLength(2);
    expect(FakeSocket.all[1].url).toContain('ticket=t2&since=11');
    // Fails again before opening: the next wait doubles.
    FakeSocket.all[1].drop(1006);
    expect(t.clock.pending()).toEqual([1000]);
    t.clock.advance(1000);
    await flush();
    FakeSocket.all[2].drop(1006);
    expect(t.clock.pending()).toEqual([2000]);
    t.clock.advance(2000);
    await flush();
    FakeSocket.all[3].open();
    expect(t.conn.state).toBe('live');
    // Opening resets the backoff.
    FakeSocket.all[3].drop(1006);
    expect(t.clock.pending()).toEqual([500]);
    expect(t.states).toEqual(['live', 'reconnecting', 'live', 'reconnecting']);
  });

  it('caps the wait at 30 s', async () => {
    const t = setup({ random: () => 0.99 });
    t.conn.start();
    await flush();
    for (let i = 0; i < 8; i++) {
      FakeSocket.all[FakeSocket.all.length - 1].drop(1006);
      const [wait] = t.clock.pending();
      expect(wait).toBeLessThan(30_000);
      t.clock.advance(wait);
      await flush();
    }
    expect(t.clock.pending()).toEqual([]);
    FakeSocket.all[FakeSocket.all.length - 1].drop(1006);
    expect(t.clock.pending()[0]).toBe(29_700);
  });

  it('holds events during a resync refetch and then resumes from latest_seq', async () => {
    const t = setup();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    (t.conn as unknown as { o: { onResync: (n: number) => Promise<void> } }).o.onResync = async (n) => {
      t.resyncs.push(n);
      await gate;
    };
    t.conn.start();
    await flush();
    const s = FakeSocket.all[0];
    s.open();
    s.frame({ protocol_version: 1, event_type: 'resync_required', payload: { latest_seq: 500 }, seq: null });
    s.frame(ev(501));
    expect(t.resyncs).toEqual([500]);
    expect(t.events).toEqual([]);
    release();
    await flush();
    expect(t.events.map((e) => e.seq)).toEqual([501]);
    s.drop(1006);
    t.clock.advance(1000);
    await flush();
    expect(FakeSocket.all[1].url).toContain('since=501');
  });

  it('falls back to the SSE stream when the socket refuses a Viewer, and stays there', async () => {
    const t = setup();
    t.conn.start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].drop(4003);
    await flush();
    expect(FakeSource.all).toHaveLength(1);
    expect(FakeSource.all[0].url).toBe('http://127.0.0.1:8080/api/v1/projects/p1/events?last_event_id=10');
    expect(t.conn.transportName).toBe('sse');
  });

  it('goes offline when the browser does, and comes back from its position when it returns', async () => {
    const t = setup();
    t.conn.start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].frame(ev(11));
    t.setOnline(false);
    expect(t.conn.state).toBe('offline');
    expect(FakeSocket.all[0].closed).toBe(true);
    t.clock.advance(120_000);
    await flush();
    expect(FakeSocket.all).toHaveLength(1);
    t.setOnline(true);
    expect(t.conn.state).toBe('reconnecting');
    await flush();
    expect(FakeSocket.all[1].url).toContain('since=11');
    FakeSocket.all[1].open();
    expect(t.conn.state).toBe('live');
  });

  it('pings and gives up on a silent socket', async () => {
    const t = setup();
    t.conn.start();
    await flush();
    const s = FakeSocket.all[0];
    s.open();
    t.clock.advance(25_000);
    expect(s.sent).toEqual(['{"type":"ping"}']);
    t.clock.advance(50_000);
    expect(s.closed).toBe(true);
    expect(t.conn.state).toBe('reconnecting');
  });

  it('moves to the SSE stream from its position when a member is demoted while connected', async () => {
    const t = setup();
    t.conn.start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].frame(ev(11));
    FakeSocket.all[0].drop(4003);
    await flush();
    expect(FakeSocket.all).toHaveLength(1);
    expect(FakeSource.all[0].url).toContain('last_event_id=11');
  });
});

describe('ProjectConnection over SSE', () => {
  it('is live on `connected`, reads ids as seqs, and resumes with last_event_id after an error', async () => {
    const t = setup({ transport: 'sse', since: 3 });
    t.conn.start();
    await flush();
    const s = FakeSource.all[0];
    expect(s.url).toBe('http://127.0.0.1:8080/api/v1/projects/p1/events?last_event_id=3');
    s.message({ type: 'connected', userId: 'u' });
    expect(t.conn.state).toBe('live');
    s.message({ type: 'ticket.created', data: { id: 'a' }, tabId: null }, '4');
    s.message({ type: 'presence.join', data: { user_id: 'u2', display_name: 'U' } });
    s.message({ type: 'ticket.moved', data: { id: 'a' }, tabId: 'tab-me' }, '5');
    expect(t.events.map((e) => [e.type, e.seq])).toEqual([
      ['task_created', 4],
      ['presence_join', null],
    ]);
    s.onerror?.({});
    expect(s.closed).toBe(true);
    expect(t.conn.state).toBe('reconnecting');
    t.clock.advance(1000);
    await flush();
    expect(FakeSource.all[1].url).toContain('last_event_id=5');
  });
});
