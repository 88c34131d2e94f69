// One live connection per open project, modelled on centrifuge-js's client: a small state
// machine (live / reconnecting / offline), reconnects with full-jitter backoff from 1 s to 30 s,
// resume from the last seq seen (`since` / `last_event_id`), `resync_required` answered by the
// app refetching, and echo suppression of the events this tab's own writes caused.

import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from './backoff';
import type { EventType, Frame, LiveEvent } from './events';
import {
  type EventSourceCtor,
  openEventSource,
  openWebSocket,
  type Transport,
  type TransportHandlers,
  type WebSocketCtor,
} from './transports';

export type ConnectionState = 'live' | 'reconnecting' | 'offline';

/** The native socket's close code for "not a Member of this project" (CONTRACT §6). */
export const CLOSE_FORBIDDEN = 4003;

/** Events a tab's own write causes that it still needs: the scheduler's outputs are not in the
 *  write's answer, so they are never suppressed as echoes. */
const NEVER_ECHO: ReadonlySet<EventType> = new Set(['cpm_complete', 'cpm_error', 'task_dates_updated']);

export interface Environment {
  WebSocket?: WebSocketCtor;
  EventSource?: EventSourceCtor;
  setTimeout: (fn: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
  setInterval: (fn: () => void, ms: number) => unknown;
  clearInterval: (handle: unknown) => void;
  now: () => number;
  /** false while the browser knows it has no network. */
  online: () => boolean;
  /** Subscribes to the browser's online/offline changes; returns the unsubscriber. */
  watchOnline?: (onChange: (online: boolean) => void) => () => void;
}

export function browserEnvironment(): Environment {
  return {
    WebSocket: globalThis.WebSocket as unknown as WebSocketCtor,
    EventSource: globalThis.EventSource as unknown as EventSourceCtor,
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (h) => globalThis.clearTimeout(h as number),
    setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
    clearInterval: (h) => globalThis.clearInterval(h as number),
    now: () => Date.now(),
    online: () => (typeof navigator === 'undefined' ? true : navigator.onLine),
    watchOnline: (onChange) => {
      const up = () => onChange(true);
      const down = () => onChange(false);
      globalThis.addEventListener('online', up);
      globalThis.addEventListener('offline', down);
      return () => {
        globalThis.removeEventListener('online', up);
        globalThis.removeEventListener('offline', down);
      };
    },
  };
}

export interface ProjectConnectionOptions {
  projectId: string;
  /** The page's origin (`location.origin`). */
  origin: string;
  /** This tab's id, sent as `X-Tab-Id` on writes: events carrying it are echoes. */
  tabId: string;
  /** Mints a single-use ticket (POST /api/v1/ws/ticket/). */
  ticket: () => Promise<string>;
  /** 'websocket' for members; 'sse' for a Viewer, whom the native socket refuses. */
  transport: 'websocket' | 'sse';
  /** The seq the app's snapshot is at (the log's `latest_seq` read before it fetched). */
  since: number | null;
  /** Called with every event that is not an echo of this tab's writes, in seq order. */
  onEvent: (event: LiveEvent) => void;
  /** Called on `resync_required`: refetch everything; events wait until it settles. */
  onResync: (latestSeq: number) => Promise<void>;
  onState?: (state: ConnectionState) => void;
  backoff?: BackoffOptions;
  env?: Environment;
}

export class ProjectConnection {
  private readonly o: ProjectConnectionOptions;
  private readonly env: Environment;
  private readonly backoff: BackoffOptions;
  private transport: Transport | null = null;
  private kind: 'websocket' | 'sse';
  private stateNow: ConnectionState = 'reconnecting';
  private lastSeq: number | null;
  private attempt = 0;
  private retryTimer: unknown = null;
  private stopped = false;
  private unwatch: (() => void) | null = null;
  /** Frames that arrived while a resync refetch was running. */
  private held: Frame[] | null = null;
  /** Which connect call is current: a late ticket for an abandoned one is dropped. */
  private generation = 0;

  constructor(options: ProjectConnectionOptions) {
    this.o = options;
    this.env = options.env ?? browserEnvironment();
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.kind = options.transport;
    this.lastSeq = options.since;
  }

  get state(): ConnectionState {
    return this.stateNow;
  }
  /** The last seq delivered (or skipped as an echo): where a reconnect resumes. */
  get position(): number | null {
    return this.lastSeq;
  }
  get transportName(): 'websocket' | 'sse' {
    return this.kind;
  }

  start(): void {
    this.unwatch = this.env.watchOnline?.((online) => (online ? this.wentOnline() : this.wentOffline())) ?? null;
    if (!this.env.online()) {
      this.setState('offline');
      return;
    }
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.generation++;
    this.unwatch?.();
    this.unwatch = null;
    this.cancelRetry();
    this.transport?.close();
    this.transport = null;
    this.setState('offline');
  }

  private setState(state: ConnectionState): void {
    if (state === this.stateNow) return;
    this.stateNow = state;
    this.o.onState?.(state);
  }

  private wentOffline(): void {
    if (this.stopped) return;
    // The browser knows the network is gone: drop the socket now rather than wait for it to
    // time out, and come back from our position when the network does.
    this.generation++;
    this.cancelRetry();
    this.transport?.close();
    this.transport = null;
    this.setState('offline');
  }

  private wentOnline(): void {
    if (this.stopped) return;
    this.attempt = 0;
    this.cancelRetry();
    if (!this.transport) {
      this.setState('reconnecting');
      void this.connect();
    }
  }

  private cancelRetry(): void {
    if (this.retryTimer !== null) this.env.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    const handlers: TransportHandlers = {
      onOpen: () => {
        if (generation !== this.generation) return;
        this.attempt = 0;
        this.setState('live');
      },
      onFrame: (frame) => {
        if (generation !== this.generation) return;
        this.frame(frame);
      },
      onClose: (code) => {
        if (generation !== this.generation) return;
        this.transport = null;
        this.closed(code);
      },
    };
    try {
      if (this.kind === 'websocket') {
        const ticket = await this.o.ticket();
        if (generation !== this.generation || this.stopped) return;
        if (!this.env.WebSocket) throw new Error('no WebSocket in this environment');
        this.transport = openWebSocket(
          {
            origin: this.o.origin,
            projectId: this.o.projectId,
            ticket,
            since: this.lastSeq,
            WebSocket: this.env.WebSocket,
            setInterval: this.env.setInterval,
            clearInterval: this.env.clearInterval,
            now: this.env.now,
          },
          handlers,
        );
      } else {
        if (!this.env.EventSource) throw new Error('no EventSource in this environment');
        this.transport = openEventSource(
          { origin: this.o.origin, projectId: this.o.projectId, since: this.lastSeq, EventSource: this.env.EventSource },
          handlers,
        );
      }
    } catch {
      if (generation !== this.generation) return;
      this.scheduleRetry();
    }
  }

  private closed(code: number | null): void {
    if (this.stopped) return;
    if (code === CLOSE_FORBIDDEN && this.kind === 'websocket') {
      // The native socket is for Members: a Viewer is refused at once, and a member demoted to
      // Viewer is closed. The SSE stream takes any member role (and answers 404 to someone
      // with no access at all, which then retries with backoff like any failure).
      this.kind = 'sse';
      void this.connect();
      return;
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    if (!this.env.online()) {
      this.setState('offline');
      return;
    }
    this.setState('reconnecting');
    const delay = backoffDelay(this.attempt++, this.backoff);
    this.cancelRetry();
    this.retryTimer = this.env.setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }

  private frame(frame: Frame): void {
    if (this.held) {
      this.held.push(frame);
      return;
    }
    if (frame.kind === 'resync') {
      void this.resync(frame.latestSeq);
      return;
    }
    if (frame.kind !== 'event') return;
    const event = frame.event;
    if (event.seq !== null) {
      // A replay overlapping what we have already applied: skip the duplicate.
      if (this.lastSeq !== null && event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
    }
    if (event.tabId !== null && event.tabId === this.o.tabId && !NEVER_ECHO.has(event.type)) return;
    this.o.onEvent(event);
  }

  private async resync(latestSeq: number): Promise<void> {
    this.held = [];
    try {
      await this.o.onResync(latestSeq);
      this.lastSeq = latestSeq;
    } finally {
      const held = this.held ?? [];
      this.held = null;
      for (const f of held) this.frame(f);
    }
  }
}
