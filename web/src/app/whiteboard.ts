// A whiteboard: a Yjs document edited with yjs + y-websocket against the server's
// /ws/v1/whiteboards endpoint (CONTRACT §11), drawn on a canvas. The document shape is the one
// the server reads: `elements` (id → Y.Map), a path's `points` a flat Y.Array [x, y, pressure…].
// Cursors and names travel in the awareness state.

import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';
import { wsOrigin } from '../client';
import { clear, h } from './dom';
import type { ProjectState } from './project';

const WIDTH = 1200;
const HEIGHT = 700;
const COLORS = ['#e11d48', '#2563eb', '#16a34a', '#d97706', '#7c3aed', '#0891b2'];

type Tool = 'pen' | 'rect' | 'ellipse' | 'text';

interface CursorState {
  user?: { id: string; name: string; color: string };
  cursor?: { x: number; y: number } | null;
}

function colorOf(userId: string): string {
  let n = 0;
  for (const c of userId) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[n % COLORS.length];
}

/** A fractional-index-like z: later strokes sort after earlier ones as strings. */
function nextZ(): string {
  return 'z' + Date.now().toString(36).padStart(10, '0') + Math.random().toString(36).slice(2, 6);
}

export class WhiteboardView {
  readonly root: HTMLElement;
  private readonly doc = new Y.Doc();
  private provider: WebsocketProvider | null = null;
  private readonly canvas: HTMLCanvasElement;
  private readonly cursors: HTMLElement;
  private readonly status: HTMLElement;
  private tool: Tool = 'pen';
  private drawing: { el: Y.Map<unknown>; startX: number; startY: number } | null = null;
  private frame = 0;
  private destroyed = false;
  private failures = 0;
  private readonly color: string;

  constructor(
    private readonly project: ProjectState,
    readonly boardId: string,
    private readonly me: { id: string; name: string },
  ) {
    this.color = colorOf(me.id);
    this.canvas = h('canvas', { testid: 'whiteboard-canvas', width: WIDTH, height: HEIGHT, class: 'wb-canvas' });
    this.cursors = h('div', { class: 'wb-cursors' });
    this.status = h('span', { class: 'wb-status' }, 'connecting');
    const tools = h('div', { class: 'wb-tools' });
    for (const tool of ['pen', 'rect', 'ellipse', 'text'] as Tool[]) {
      const b = h('button', { type: 'button', testid: `whiteboard-tool-${tool}`, class: tool === this.tool ? 'active' : '' }, tool);
      b.disabled = !project.canEdit;
      b.addEventListener('click', () => {
        this.tool = tool;
        for (const other of tools.querySelectorAll('button')) other.classList.toggle('active', other === b);
      });
      tools.append(b);
    }
    tools.append(this.status);
    const stage = h('div', { class: 'wb-stage' }, this.canvas, this.cursors);
    stage.style.width = `${WIDTH}px`;
    stage.style.height = `${HEIGHT}px`;
    this.root = h('section', { class: 'whiteboard' }, tools, stage);
    this.bindPointer();
    this.doc.getMap('elements').observeDeep(() => this.schedule());
    void this.connect();
  }

  private async connect(): Promise<void> {
    try {
      const ticket = await this.project.api.ticket();
      if (this.destroyed) return;
      const provider = new WebsocketProvider(`${wsOrigin(location.origin)}/ws/v1/whiteboards`, this.boardId, this.doc, {
        params: { ticket },
        disableBc: true,
      });
      this.provider = provider;
      provider.awareness.setLocalStateField('user', { id: this.me.id, name: this.me.name, color: this.color });
      provider.awareness.on('change', () => this.drawCursors());
      provider.on('status', (e: { status: string }) => {
        this.status.textContent = e.status;
        if (e.status === 'connected') this.failures = 0;
      });
      // Tickets are single use: the next reconnect needs a fresh one, minted as soon as the
      // socket drops (y-websocket waits at least 100 ms before it tries again).
      provider.on('connection-close', () => void this.refreshTicket());
      // A refused ticket (4401) is final for y-websocket: mint another and reconnect, a few times.
      provider.on('closed', (e: { code: number }) => {
        if (this.destroyed) return;
        if (e.code === 4403 || e.code === 4404 || ++this.failures > 5) {
          this.project.report(new Error(`the whiteboard connection was refused (${e.code})`));
          return;
        }
        void this.refreshTicket().then(() => provider.connect());
      });
    } catch (err) {
      this.project.report(err);
    }
  }

  private async refreshTicket(): Promise<void> {
    if (this.destroyed || !this.provider) return;
    try {
      this.provider.params = { ticket: await this.project.api.ticket() };
    } catch {
      // Offline: y-websocket keeps retrying, and the next close tries again.
    }
  }

  destroy(): void {
    this.destroyed = true;
    cancelAnimationFrame(this.frame);
    this.provider?.destroy();
    this.doc.destroy();
  }

  private point(ev: PointerEvent): [number, number] {
    const r = this.canvas.getBoundingClientRect();
    return [Math.round(((ev.clientX - r.left) * WIDTH) / r.width), Math.round(((ev.clientY - r.top) * HEIGHT) / r.height)];
  }

  private bindPointer(): void {
    this.canvas.addEventListener('pointerdown', (ev) => {
      if (!this.project.canEdit || ev.button !== 0) return;
      const [x, y] = this.point(ev);
      this.canvas.setPointerCapture?.(ev.pointerId);
      if (this.tool === 'text') {
        const text = window.prompt('Text');
        if (text) this.add('text', x, y, (el) => {
          const t = new Y.Text();
          t.insert(0, text);
          el.set('text', t);
          el.set('w', text.length * 9);
          el.set('h', 20);
        });
        return;
      }
      const el = this.add(this.tool === 'pen' ? 'path' : this.tool, x, y, (m) => {
        if (this.tool === 'pen') {
          const points = new Y.Array<number>();
          points.push([0, 0, ev.pressure || 0.5]);
          m.set('points', points);
          m.set('complete', false);
        }
      });
      this.drawing = { el, startX: x, startY: y };
    });
    this.canvas.addEventListener('pointermove', (ev) => {
      const [x, y] = this.point(ev);
      this.provider?.awareness.setLocalStateField('cursor', { x, y });
      if (!this.drawing) return;
      const { el, startX, startY } = this.drawing;
      if (el.get('type') === 'path') {
        (el.get('points') as Y.Array<number>).push([x - startX, y - startY, ev.pressure || 0.5]);
      } else {
        this.doc.transact(() => {
          el.set('x', Math.min(x, startX));
          el.set('y', Math.min(y, startY));
          el.set('w', Math.abs(x - startX));
          el.set('h', Math.abs(y - startY));
        });
      }
    });
    const finish = () => {
      if (!this.drawing) return;
      const { el } = this.drawing;
      this.drawing = null;
      this.doc.transact(() => {
        if (el.get('type') === 'path') el.set('complete', true);
        el.set('updated_at', new Date().toISOString());
      });
    };
    this.canvas.addEventListener('pointerup', finish);
    this.canvas.addEventListener('pointercancel', finish);
    this.canvas.addEventListener('pointerleave', () => this.provider?.awareness.setLocalStateField('cursor', null));
  }

  private add(type: string, x: number, y: number, more: (el: Y.Map<unknown>) => void): Y.Map<unknown> {
    const id = crypto.randomUUID();
    const el = new Y.Map<unknown>();
    this.doc.transact(() => {
      el.set('id', id);
      el.set('type', type);
      el.set('x', x);
      el.set('y', y);
      el.set('w', 0);
      el.set('h', 0);
      el.set('rotation', 0);
      el.set('z', nextZ());
      el.set('style', JSON.stringify({ stroke: this.color, width: 3 }));
      el.set('created_by', this.me.id);
      el.set('updated_at', new Date().toISOString());
      more(el);
      this.doc.getMap('elements').set(id, el);
    });
    return el;
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw(): void {
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    const elements = [...this.doc.getMap<Y.Map<unknown>>('elements').values()].sort((a, b) =>
      String(a.get('z')) < String(b.get('z')) ? -1 : 1,
    );
    for (const el of elements) {
      let style: { stroke?: string; width?: number } = {};
      try {
        style = JSON.parse(String(el.get('style') ?? '{}'));
      } catch {
        style = {};
      }
      ctx.strokeStyle = style.stroke ?? '#111';
      ctx.fillStyle = style.stroke ?? '#111';
      ctx.lineWidth = style.width ?? 2;
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      const x = Number(el.get('x') ?? 0);
      const y = Number(el.get('y') ?? 0);
      const w = Number(el.get('w') ?? 0);
      const hgt = Number(el.get('h') ?? 0);
      switch (el.get('type')) {
        case 'path': {
          const pts = el.get('points');
          const arr = pts instanceof Y.Array ? (pts.toArray() as number[]) : [];
          ctx.beginPath();
          for (let i = 0; i + 1 < arr.length; i += 3) {
            if (i === 0) ctx.moveTo(x + arr[i], y + arr[i + 1]);
            else ctx.lineTo(x + arr[i], y + arr[i + 1]);
          }
          if (arr.length === 3) ctx.lineTo(x + arr[0] + 0.1, y + arr[1] + 0.1);
          ctx.stroke();
          break;
        }
        case 'rect':
          ctx.strokeRect(x, y, w, hgt);
          break;
        case 'ellipse':
          ctx.beginPath();
          ctx.ellipse(x + w / 2, y + hgt / 2, Math.max(1, w / 2), Math.max(1, hgt / 2), 0, 0, Math.PI * 2);
          ctx.stroke();
          break;
        case 'text': {
          const t = el.get('text');
          ctx.font = '16px system-ui, sans-serif';
          ctx.fillText(t instanceof Y.Text ? t.toString() : String(t ?? ''), x, y + 16);
          break;
        }
        default:
          break;
      }
    }
    // How many elements are drawn, for tests and people alike.
    this.canvas.dataset.elements = String(elements.length);
  }

  private drawCursors(): void {
    if (!this.provider) return;
    clear(this.cursors);
    const seen = new Set<string>();
    for (const [clientId, state] of this.provider.awareness.getStates() as Map<number, CursorState>) {
      if (clientId === this.doc.clientID || !state.user || !state.cursor) continue;
      // One cursor per other person, even with several tabs open.
      if (state.user.id === this.me.id || seen.has(state.user.id)) continue;
      seen.add(state.user.id);
      const cursor = h(
        'div',
        { testid: 'whiteboard-cursor', class: 'wb-cursor', 'data-user-id': state.user.id },
        h('span', { class: 'wb-cursor-name' }, state.user.name),
      );
      cursor.style.left = `${(state.cursor.x / WIDTH) * 100}%`;
      cursor.style.top = `${(state.cursor.y / HEIGHT) * 100}%`;
      cursor.style.borderColor = state.user.color;
      (cursor.firstChild as HTMLElement).style.background = state.user.color;
      this.cursors.append(cursor);
    }
  }
}
