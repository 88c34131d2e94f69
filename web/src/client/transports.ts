// One interface, two transports (as centrifuge-js does): the native WebSocket (CONTRACT §6)
// for members and the project's SSE stream (§7) for anyone who may read, Viewers included.

import { type Frame, parseSseMessage, parseWsFrame } from './events';

export interface TransportHandlers {
  /** The transport is delivering (socket open / SSE `connected`). */
  onOpen(): void;
  onFrame(frame: Frame): void;
  /** Closed by the other side or the network. `code` is the WebSocket close code, or null. */
  onClose(code: number | null): void;
}

export interface Transport {
  readonly name: 'websocket' | 'sse';
  close(): void;
}

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

export interface EventSourceLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: string; lastEventId: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(): void;
}
export type EventSourceCtor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/** The page's origin turned into ws:// or wss://. */
export function wsOrigin(httpOrigin: string): string {
  return httpOrigin.replace(/^http/, 'ws');
}

/** How often the client pings the server and how long it waits for any frame before giving up
 *  on a socket the network silently dropped (the browser would wait minutes). */
export const CLIENT_PING_MS = 25_000;
export const SILENCE_LIMIT_MS = 60_000;

export interface WsOptions {
  origin: string;
  projectId: string;
  ticket: string;
  since: number | null;
  WebSocket: WebSocketCtor;
  setInterval: (fn: () => void, ms: number) => unknown;
  clearInterval: (handle: unknown) => void;
  now: () => number;
}

export function openWebSocket(o: WsOptions, h: TransportHandlers): Transport {
  let url = `${wsOrigin(o.origin)}/ws/v1/projects/${encodeURIComponent(o.projectId)}/?ticket=${encodeURIComponent(o.ticket)}`;
  if (o.since !== null) url += `&since=${o.since}`;
  const socket = new o.WebSocket(url);
  let done = false;
  let lastHeard = o.now();
  const timer = o.setInterval(() => {
    if (o.now() - lastHeard > SILENCE_LIMIT_MS) {
      finish(null);
      socket.close();
      return;
    }
    if (socket.readyState === 1) socket.send('{"type":"ping"}');
  }, CLIENT_PING_MS);
  const finish = (code: number | null) => {
    if (done) return;
    done = true;
    o.clearInterval(timer);
    h.onClose(code);
  };
  socket.onopen = () => {
    lastHeard = o.now();
    if (!done) h.onOpen();
  };
  socket.onmessage = (ev) => {
    lastHeard = o.now();
    if (done || typeof ev.data !== 'string') return;
    h.onFrame(parseWsFrame(ev.data));
  };
  socket.onerror = () => {};
  socket.onclose = (ev) => finish(ev.code);
  return {
    name: 'websocket',
    close() {
      done = true;
      o.clearInterval(timer);
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(1000, 'client closed');
    },
  };
}

export interface SseOptions {
  origin: string;
  projectId: string;
  since: number | null;
  EventSource: EventSourceCtor;
}

/** The project's SSE stream, authenticated by the session cookie. The browser's own retry is
 *  switched off by closing on the first error: the connection retries with its own backoff and
 *  passes its position as `?last_event_id=` (a fresh EventSource cannot be given the header). */
export function openEventSource(o: SseOptions, h: TransportHandlers): Transport {
  let url = `${o.origin}/api/v1/projects/${encodeURIComponent(o.projectId)}/events`;
  if (o.since !== null) url += `?last_event_id=${o.since}`;
  const source = new o.EventSource(url, { withCredentials: true });
  let done = false;
  source.onmessage = (ev) => {
    if (done) return;
    let connected = false;
    try {
      connected = (JSON.parse(ev.data) as { type?: unknown }).type === 'connected';
    } catch {
      connected = false;
    }
    if (connected) {
      h.onOpen();
      return;
    }
    h.onFrame(parseSseMessage(ev.data, ev.lastEventId));
  };
  source.onerror = () => {
    if (done) return;
    done = true;
    source.close();
    h.onClose(null);
  };
  return {
    name: 'sse',
    close() {
      done = true;
      source.onmessage = source.onerror = source.onopen = null;
      source.close();
    },
  };
}
