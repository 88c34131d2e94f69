// The board: a column per board column record (or, when the project has none, per status),
// a card per task that has no children. Cards move with native HTML5 drag and drop: it does
// the one gesture needed here, works in every browser and in Playwright, so no library earns
// its place.

import { clear, h } from './dom';
import type { Column, ProjectState, Task } from './project';

/** The statuses a project without column records is shown in, in order. */
export const DEFAULT_STATUSES: Array<[string, string]> = [
  ['todo', 'To do'],
  ['in_progress', 'In progress'],
  ['done', 'Done'],
];

interface Lane {
  column: Column | null;
  status: string | null;
  title: string;
  matches: (t: Task) => boolean;
}

export class BoardView {
  readonly root: HTMLElement;
  private frame = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly project: ProjectState) {
    this.root = h('section', { class: 'board', testid: 'board' });
    this.unsubscribe = project.subscribe(() => this.schedule());
    this.render();
  }

  destroy(): void {
    this.unsubscribe();
    cancelAnimationFrame(this.frame);
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private lanes(tasks: Task[]): Lane[] {
    const columns = [...this.project.columns.values()].sort((a, b) => (a.position ?? 0) - (b.position ?? 0) || (a.id < b.id ? -1 : 1));
    if (columns.length > 0) {
      const byId = new Set(columns.map((c) => c.id));
      return columns.map((column, i) => ({
        column,
        status: column.status,
        title: column.name,
        matches: (t: Task) =>
          t.column_id && byId.has(t.column_id)
            ? t.column_id === column.id
            : column.status
              ? (t.status ?? 'todo') === column.status
              : i === 0 && !columns.some((c) => c.status && c.status === t.status),
      }));
    }
    const statuses = [...DEFAULT_STATUSES];
    for (const t of tasks) {
      const st = t.status || 'todo';
      if (!statuses.some(([k]) => k === st)) statuses.push([st, st]);
    }
    return statuses.map(([status, title]) => ({
      column: null,
      status,
      title,
      matches: (t: Task) => (t.status || 'todo') === status,
    }));
  }

  private render(): void {
    const parents = new Set<string>();
    for (const t of this.project.tasks.values()) if (t.parent_id) parents.add(t.parent_id);
    const cards = [...this.project.tasks.values()]
      .filter((t) => !parents.has(t.id))
      .sort((a, b) => (String(a.rank ?? '') < String(b.rank ?? '') ? -1 : String(a.rank ?? '') > String(b.rank ?? '') ? 1 : a.id < b.id ? -1 : 1));
    clear(this.root);
    const editable = this.project.canEdit;
    for (const lane of this.lanes(cards)) {
      const mine = cards.filter(lane.matches);
      const list = h('div', { class: 'cards' });
      for (const task of mine) {
        const card = h(
          'div',
          { testid: 'board-card', class: 'card', 'data-task-id': task.id, draggable: editable ? 'true' : 'false' },
          h('span', { class: 'card-name' }, task.name),
          task.duration !== null && task.duration !== undefined ? h('span', { class: 'card-meta' }, `${task.duration} d`) : null,
        );
        card.addEventListener('dragstart', (ev) => {
          ev.dataTransfer?.setData('text/plain', task.id);
          if (ev.dataTransfer) ev.dataTransfer.effectAllowed = 'move';
          card.classList.add('dragging');
        });
        card.addEventListener('dragend', () => card.classList.remove('dragging'));
        list.append(card);
      }
      const attrs: Record<string, string> = { testid: 'board-column', class: 'column' };
      if (lane.column) attrs['data-column-id'] = lane.column.id;
      if (lane.status) attrs['data-status'] = lane.status;
      const col = h('div', attrs, h('h3', {}, lane.title, h('span', { class: 'count' }, String(mine.length))), list);
      col.addEventListener('dragover', (ev) => {
        ev.preventDefault();
        col.classList.add('over');
      });
      col.addEventListener('dragleave', () => col.classList.remove('over'));
      col.addEventListener('drop', (ev) => {
        ev.preventDefault();
        col.classList.remove('over');
        const id = ev.dataTransfer?.getData('text/plain');
        const task = id ? this.project.tasks.get(id) : undefined;
        if (!task || lane.matches(task)) return;
        const fields: Record<string, unknown> = {};
        if (lane.column) fields.column_id = lane.column.id;
        if (lane.status) fields.status = lane.status;
        this.project.updateTask(task.id, fields).catch((err) => this.project.report(err));
      });
      this.root.append(col);
    }
  }
}
