// The Gantt, drawn by hand in SVG (web/README.md says why: the one complete Gantt library,
// Bryntum, is commercial, and the free ones cannot show the server's own schedule as is).
// Rows are virtualized: only the rows in view (plus a margin) exist in the DOM, so a project of
// 1,000 tasks costs as much to draw as one of forty.

import { clear, dayNumber, h, isoDay, s } from './dom';
import type { ProjectState, Task } from './project';

const ROW = 28;
const DAY = 22;
const OVERSCAN = 8;
const LEFT = 380;

interface Row {
  task: Task;
  depth: number;
  hasChildren: boolean;
}

function compareRank(a: Task, b: Task): number {
  const ra = a.rank ?? '';
  const rb = b.rank ?? '';
  if (ra !== rb) return String(ra) < String(rb) ? -1 : 1;
  // Ids are UUID v7: their order is their creation order.
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Tasks in hierarchy order: each parent followed by its children. */
export function hierarchy(tasks: Iterable<Task>): Row[] {
  const children = new Map<string | null, Task[]>();
  const all = [...tasks];
  const known = new Set(all.map((t) => t.id));
  for (const t of all) {
    const parent = t.parent_id && known.has(t.parent_id) ? t.parent_id : null;
    const list = children.get(parent) ?? [];
    list.push(t);
    children.set(parent, list);
  }
  for (const list of children.values()) list.sort(compareRank);
  const rows: Row[] = [];
  const seen = new Set<string>();
  const walk = (roots: Task[]) => {
    const stack: Array<[Task, number]> = roots.slice().reverse().map((t) => [t, 0]);
    while (stack.length) {
      const [task, depth] = stack.pop()!;
      if (seen.has(task.id)) continue;
      seen.add(task.id);
      const kids = children.get(task.id) ?? [];
      rows.push({ task, depth, hasChildren: kids.length > 0 });
      for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1]);
    }
  };
  walk(children.get(null) ?? []);
  // Tasks no root leads to (a parent cycle the server should never hold) are still shown.
  if (seen.size < all.length) walk(all.filter((t) => !seen.has(t.id)).sort(compareRank));
  return rows;
}

export class GanttView {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly names: HTMLElement;
  private readonly chart: SVGSVGElement;
  private readonly header: SVGSVGElement;
  private rows: Row[] = [];
  private index = new Map<string, number>();
  private origin = 0;
  private days = 60;
  private editing: string | null = null;
  private frame = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly project: ProjectState) {
    const nameInput = h('input', { testid: 'new-task-name', placeholder: 'New task name', maxlength: 200 });
    const submit = h('button', { testid: 'new-task-submit', type: 'submit' }, 'Add task');
    const form = h('form', { class: 'new-task' }, nameInput, submit);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = nameInput.value.trim();
      if (!name) return;
      // No role check here: a disabled control is the Viewer's guard, and a write forced past
      // it shows the server's refusal.
      this.project
        .createTask(name)
        .then(() => (nameInput.value = ''))
        .catch((err) => this.project.report(err));
    });
    this.header = s('svg', { class: 'gantt-header', height: 24 });
    this.names = h('div', { class: 'gantt-names' });
    this.chart = s('svg', { class: 'gantt-chart' });
    this.spacer = h('div', { class: 'gantt-spacer' }, this.names, this.chart);
    this.body = h('div', { class: 'gantt-body', testid: 'gantt' }, this.spacer);
    const head = h(
      'div',
      { class: 'gantt-head' },
      h('div', { class: 'gantt-head-names' }, h('span', {}, 'Task'), h('span', {}, 'Days')),
      h('div', { class: 'gantt-head-chart' }, this.header),
    );
    this.root = h('section', { class: 'gantt' }, form, head, this.body);
    this.body.addEventListener('scroll', () => {
      (head.lastChild as HTMLElement).scrollLeft = this.body.scrollLeft;
      this.schedule();
    });
    this.unsubscribe = project.subscribe(() => this.schedule());
    this.syncControls(nameInput, submit);
    this.project.subscribe(() => this.syncControls(nameInput, submit));
    this.layout();
  }

  destroy(): void {
    this.unsubscribe();
    cancelAnimationFrame(this.frame);
  }

  private syncControls(input: HTMLInputElement, button: HTMLButtonElement): void {
    input.disabled = !this.project.canEdit;
    button.disabled = !this.project.canEdit;
  }

  /** Coalesces changes into one redraw per animation frame. */
  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.layout();
    });
  }

  /** Draws now (first paint, and the benchmark's measure). */
  layout(): void {
    // A rename in progress keeps its input: the redraw waits for it to finish.
    if (this.editing) return;
    this.rows = hierarchy(this.project.tasks.values());
    this.index = new Map(this.rows.map((r, i) => [r.task.id, i]));
    let min = Infinity;
    let max = -Infinity;
    for (const r of this.rows) {
      if (r.task.early_start) min = Math.min(min, dayNumber(r.task.early_start));
      if (r.task.early_finish) max = Math.max(max, dayNumber(r.task.early_finish));
    }
    if (!Number.isFinite(min)) {
      min = dayNumber(new Date().toISOString());
      max = min + 30;
    }
    // Monday of the first week, a margin after the last day.
    const weekday = (min + 3) % 7; // day 0 (1970-01-01) was a Thursday
    this.origin = min - weekday - 7;
    this.days = Math.max(60, max - this.origin + 21);
    const width = this.days * DAY;
    const height = this.rows.length * ROW;
    this.spacer.style.height = `${height}px`;
    this.spacer.style.width = `${LEFT + width}px`;
    this.chart.setAttribute('width', String(width));
    this.chart.setAttribute('height', String(height));
    this.drawHeader(width);
    this.drawWindow();
  }

  private x(iso: string): number {
    return (dayNumber(iso) - this.origin) * DAY;
  }

  private drawHeader(width: number): void {
    clear(this.header);
    this.header.setAttribute('width', String(width));
    for (let d = 0; d < this.days; d += 7) {
      this.header.append(
        s('line', { x1: d * DAY, x2: d * DAY, y1: 0, y2: 24, class: 'tick' }),
        s('text', { x: d * DAY + 3, y: 16, class: 'tick-label' }, isoDay(this.origin + d).slice(5)),
      );
    }
  }

  private drawWindow(): void {
    const top = this.body.scrollTop;
    const view = this.body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + view) / ROW) + OVERSCAN);
    clear(this.names);
    clear(this.chart);
    this.chart.append(
      s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto' }, s('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrow-head' }))),
    );
    // Week stripes over the rows in view.
    for (let d = 0; d < this.days; d += 7) {
      this.chart.append(s('line', { x1: d * DAY, x2: d * DAY, y1: first * ROW, y2: last * ROW, class: 'grid' }));
    }
    for (let i = first; i < last; i++) this.drawRow(i);
    this.drawDependencies(first, last);
  }

  private drawRow(i: number): void {
    const { task, depth, hasChildren } = this.rows[i];
    const y = i * ROW;
    const editable = this.project.canEdit;
    const name = h('span', { testid: 'task-name', class: 'task-name', title: task.name }, task.name);
    name.style.paddingLeft = `${depth * 16}px`;
    if (hasChildren) name.classList.add('summary');
    name.addEventListener('dblclick', () => {
      if (!this.project.canEdit) return;
      this.startRename(task, name);
    });
    const duration = h('input', {
      type: 'number',
      min: 0,
      step: 1,
      class: 'task-duration',
      testid: 'task-duration',
      value: task.duration ?? 0,
      disabled: !editable || hasChildren,
      'aria-label': `Duration of ${task.name}`,
    });
    duration.addEventListener('change', () => {
      const value = Number(duration.value);
      if (!Number.isFinite(value) || value < 0) return;
      this.project.updateTask(task.id, { duration: value }).catch((err) => this.project.report(err));
    });
    const row = h('div', { testid: 'task-row', class: 'task-row', 'data-task-id': task.id }, name, duration);
    row.style.top = `${y}px`;
    this.names.append(row);

    if (!task.early_start || !task.early_finish) return;
    const critical = task.is_critical === true;
    const attrs = {
      testid: 'task-bar',
      'data-task-id': task.id,
      'data-start': task.early_start.slice(0, 10),
      'data-finish': task.early_finish.slice(0, 10),
      'data-critical': critical ? 'true' : 'false',
    };
    let bar: SVGElement;
    if (hasChildren) {
      // A summary spans its children (the attributes still carry its own scheduled dates).
      const [from, to] = this.span(i);
      const x0 = this.x(from);
      const x1 = this.x(to) + DAY;
      bar = s('path', {
        ...attrs,
        d: `M${x0},${y + 8} H${x1} V${y + 20} L${x1 - 6},${y + 14} H${x0 + 6} L${x0},${y + 20} z`,
        class: `bar summary${critical ? ' critical' : ''}`,
      });
    } else if (task.is_milestone === true || task.duration === 0) {
      const cx = this.x(task.early_start);
      const cy = y + ROW / 2;
      bar = s('path', { ...attrs, d: `M${cx},${cy - 8} L${cx + 8},${cy} L${cx},${cy + 8} L${cx - 8},${cy} z`, class: `bar milestone${critical ? ' critical' : ''}` });
    } else {
      const x0 = this.x(task.early_start);
      const x1 = this.x(task.early_finish) + DAY;
      bar = s('rect', { ...attrs, x: x0, y: y + 6, width: Math.max(2, x1 - x0), height: ROW - 12, rx: 3, class: `bar${critical ? ' critical' : ''}` });
    }
    bar.append(s('title', {}, `${task.name}: ${task.early_start.slice(0, 10)} → ${task.early_finish.slice(0, 10)}`));
    this.chart.append(bar);
  }

  /** The days a summary row covers: its own and all its descendants' (rows follow it). */
  private span(i: number): [string, string] {
    const depth = this.rows[i].depth;
    let from = this.rows[i].task.early_start!;
    let to = this.rows[i].task.early_finish!;
    for (let j = i + 1; j < this.rows.length && this.rows[j].depth > depth; j++) {
      const t = this.rows[j].task;
      if (t.early_start && t.early_start < from) from = t.early_start;
      if (t.early_finish && t.early_finish > to) to = t.early_finish;
    }
    return [from, to];
  }

  private drawDependencies(first: number, last: number): void {
    for (const dep of this.project.dependencies.values()) {
      const a = this.index.get(dep.predecessor_id);
      const b = this.index.get(dep.successor_id);
      if (a === undefined || b === undefined) continue;
      if (Math.max(a, b) < first || Math.min(a, b) >= last) continue;
      const from = this.rows[a].task;
      const to = this.rows[b].task;
      if (!from.early_start || !from.early_finish || !to.early_start || !to.early_finish) continue;
      const type = dep.type || 'FS';
      const fromX = type[0] === 'S' ? this.x(from.early_start) : this.x(from.early_finish) + DAY;
      const toX = type[1] === 'S' ? this.x(to.early_start) : this.x(to.early_finish) + DAY;
      const y1 = a * ROW + ROW / 2;
      const y2 = b * ROW + ROW / 2;
      const out = type[0] === 'S' ? fromX - 8 : fromX + 8;
      const into = type[1] === 'S' ? toX - 8 : toX + 8;
      const midY = y2 > y1 ? b * ROW : (b + 1) * ROW;
      const d = `M${fromX},${y1} H${out} V${midY} H${into} V${y2} H${toX}`;
      this.chart.append(s('path', { d, class: 'dependency', 'data-dependency-id': dep.id, 'marker-end': 'url(#arrow)' }));
    }
  }

  private startRename(task: Task, name: HTMLElement): void {
    this.editing = task.id;
    const input = h('input', { class: 'rename', testid: 'task-name-input', value: task.name, maxlength: 200 });
    name.replaceWith(input);
    input.focus();
    input.select();
    let finished = false;
    const done = (save: boolean) => {
      if (finished) return;
      finished = true;
      this.editing = null;
      const value = input.value.trim();
      if (save && value && value !== task.name) {
        this.project.updateTask(task.id, { name: value }).catch((err) => this.project.report(err));
      }
      this.schedule();
    };
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') done(true);
      if (ev.key === 'Escape') done(false);
    });
    input.addEventListener('blur', () => done(true));
  }
}
