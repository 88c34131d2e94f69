// One open project: its records as the app shows them, loaded over REST and kept current by the
// project's live connection. Event payloads are minimal (CONTRACT §5), so a record event is
// answered by fetching that record (SSE carries the record itself, which is used as is).

import {
  type Api,
  ApiError,
  type ConnectionState,
  type LiveEvent,
  ProjectConnection,
  type ScheduledTask,
} from '../client';

export interface Task {
  id: string;
  parent_id: string | null;
  name: string;
  status: string | null;
  column_id: string | null;
  rank: string | number | null;
  duration: number | null;
  is_milestone: boolean | null;
  early_start: string | null;
  early_finish: string | null;
  is_critical: boolean | null;
  version: number;
  [key: string]: unknown;
}
export interface Dependency { id: string; predecessor_id: string; successor_id: string; type: string; lag: number; version: number }
export interface Column { id: string; name: string; status: string | null; position: number | null; version: number }
export interface Member { membership_id: string; user_id: string; role: number; display_name?: string }
export interface Whiteboard { id: string; name: string; version: number }
export interface Presence { user_id: string; display_name: string }
export interface ProjectInfo { id: string; name: string; key?: string | null; version: number }

export const ROLE_MEMBER = 100;

type Listener = () => void;

export class ProjectState {
  info: ProjectInfo | null = null;
  tasks = new Map<string, Task>();
  dependencies = new Map<string, Dependency>();
  columns = new Map<string, Column>();
  members: Member[] = [];
  whiteboards = new Map<string, Whiteboard>();
  presence = new Map<string, Presence>();
  connection: ConnectionState = 'reconnecting';
  role = 0;
  private live: ProjectConnection | null = null;
  private listeners = new Set<Listener>();
  private closed = false;
  /** Bumped by every full reload: a record fetch started before one is stale after it. */
  private epoch = 0;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly api: Api,
    readonly id: string,
    readonly userId: string,
    private readonly onError: (message: string) => void,
  ) {}

  get canEdit(): boolean {
    return this.role >= ROLE_MEMBER;
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  private base(): string {
    return `/api/v1/projects/${this.id}`;
  }

  /** Loads everything, then opens the live connection from the log position read first. */
  async open(): Promise<void> {
    const since = await this.latestSeq();
    await this.reload();
    if (this.closed) return;
    this.live = new ProjectConnection({
      projectId: this.id,
      origin: location.origin,
      tabId: this.api.tabId,
      ticket: () => this.api.ticket(),
      transport: this.canEdit ? 'websocket' : 'sse',
      since,
      // One at a time, in seq order: a record fetched for an earlier event cannot land on top
      // of what a later one brought.
      onEvent: (e) => {
        this.queue = this.queue.then(() => this.event(e)).catch((err) => this.report(err));
      },
      onResync: async () => {
        await this.reload();
      },
      onState: (state) => {
        const was = this.connection;
        this.connection = state;
        // Presence events are ephemeral: whatever happened while we were away is read afresh.
        if (state === 'live' && was !== 'live') void this.loadPresence().catch((err) => this.report(err));
        this.changed();
      },
    });
    this.live.start();
  }

  close(): void {
    this.closed = true;
    this.live?.stop();
    this.listeners.clear();
  }

  private async latestSeq(): Promise<number> {
    const log = await this.api.get<{ latest_seq: number }>(`${this.base()}/log?since=0&limit=1`);
    return log.latest_seq ?? 0;
  }

  async reload(): Promise<void> {
    const epoch = ++this.epoch;
    const [info, tasks, deps, columns, members, boards] = await Promise.all([
      this.api.get<ProjectInfo>(this.base()),
      this.api.get<Task[]>(`${this.base()}/tasks`),
      this.api.get<Dependency[]>(`${this.base()}/dependencies`),
      this.api.get<Column[]>(`${this.base()}/columns`),
      this.api.get<Member[]>(`${this.base()}/members`),
      this.api.get<Whiteboard[]>(`${this.base()}/whiteboards`),
    ]);
    if (epoch !== this.epoch) return;
    this.info = info;
    this.tasks = new Map(tasks.map((t) => [t.id, t]));
    this.dependencies = new Map(deps.map((d) => [d.id, d]));
    this.columns = new Map(columns.map((c) => [c.id, c]));
    this.setMembers(members);
    this.whiteboards = new Map(boards.map((b) => [b.id, b]));
    await this.loadPresence();
    this.changed();
  }

  private setMembers(members: Member[]): void {
    this.members = members;
    this.role = members.find((m) => m.user_id === this.userId)?.role ?? 0;
  }

  async loadPresence(): Promise<void> {
    const rows = await this.api.get<Presence[]>(`${this.base()}/presence/`);
    this.presence = new Map(rows.map((p) => [p.user_id, { user_id: p.user_id, display_name: p.display_name }]));
    this.changed();
  }

  report(err: unknown): void {
    this.onError(err instanceof ApiError ? err.message : String(err));
  }

  /** Fetches one record after an event about it; a 404 means it is gone. */
  private async refetch<T extends { id: string; version?: number }>(
    collection: string,
    id: string,
    into: Map<string, T>,
  ): Promise<void> {
    const epoch = this.epoch;
    try {
      const record = await this.api.get<T>(`${this.base()}/${collection}/${id}`);
      if (epoch !== this.epoch) return;
      this.upsert(into, record);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        into.delete(id);
        this.changed();
        return;
      }
      throw err;
    }
  }

  /** Keeps the newest version when answers arrive out of order. */
  upsert<T extends { id: string; version?: number }>(into: Map<string, T>, record: T): void {
    const known = into.get(record.id);
    if (known && (known.version ?? 0) > (record.version ?? 0)) return;
    into.set(record.id, record);
    this.changed();
  }

  private async event(e: LiveEvent): Promise<void> {
    const id = (e.payload as { id?: string }).id;
    const full = e.data && typeof e.data.version === 'number' ? e.data : null;
    switch (e.type) {
      case 'task_created':
      case 'task_updated':
        if (full) this.upsert(this.tasks, full as unknown as Task);
        else if (id) await this.refetch('tasks', id, this.tasks);
        return;
      case 'task_deleted':
        if (id) this.tasks.delete(id);
        this.changed();
        return;
      case 'tasks_reordered':
      case 'tasks_bulk_mutated':
        await this.reloadCollection('tasks', (rows: Task[]) => (this.tasks = new Map(rows.map((t) => [t.id, t]))));
        return;
      case 'dependency_created':
      case 'dependency_updated':
      case 'dependency_accepted':
      case 'dependency_rejected':
        if (full) this.upsert(this.dependencies, full as unknown as Dependency);
        else if (id) await this.refetch('dependencies', id, this.dependencies);
        return;
      case 'dependency_deleted':
        if (id) this.dependencies.delete(id);
        this.changed();
        return;
      case 'board_config_updated':
        await this.reloadCollection('columns', (rows: Column[]) => (this.columns = new Map(rows.map((c) => [c.id, c]))));
        return;
      case 'member_added':
      case 'member_removed':
      case 'member_role_changed':
        await this.reloadCollection('members', (rows: Member[]) => this.setMembers(rows));
        return;
      case 'whiteboard_created':
      case 'whiteboard_updated':
        if (full) this.upsert(this.whiteboards, full as unknown as Whiteboard);
        else if (id) await this.refetch('whiteboards', id, this.whiteboards);
        return;
      case 'whiteboard_deleted':
        if (id) this.whiteboards.delete(id);
        this.changed();
        return;
      case 'task_dates_updated': {
        const p = e.payload as { tasks?: ScheduledTask[]; truncated?: boolean };
        if (p.truncated || !p.tasks) {
          await this.reloadCollection('tasks', (rows: Task[]) => (this.tasks = new Map(rows.map((t) => [t.id, t]))));
          return;
        }
        for (const moved of p.tasks) {
          const task = this.tasks.get(moved.id);
          if (!task) continue;
          const { id: _, ...fields } = moved;
          this.tasks.set(moved.id, { ...task, ...fields } as Task);
        }
        this.changed();
        return;
      }
      case 'project_updated':
        this.info = await this.api.get<ProjectInfo>(this.base());
        this.changed();
        return;
      case 'project_deleted':
        this.onError('This project was deleted.');
        return;
      case 'presence_join': {
        const p = e.payload as { user_id: string; display_name: string };
        this.presence.set(p.user_id, { user_id: p.user_id, display_name: p.display_name });
        this.changed();
        return;
      }
      case 'presence_leave': {
        const p = e.payload as { user_id: string };
        this.presence.delete(p.user_id);
        this.changed();
        return;
      }
      case 'database_wiped':
      case 'database_projects_wiped':
        await this.reload();
        return;
      default:
        return;
    }
  }

  private async reloadCollection<T>(collection: string, set: (rows: T[]) => void): Promise<void> {
    const epoch = this.epoch;
    const rows = await this.api.get<T[]>(`${this.base()}/${collection}`);
    if (epoch !== this.epoch) return;
    set(rows);
    this.changed();
  }

  // Writes: the answer is applied at once (its own event is suppressed as an echo); an error
  // is shown to the person, never swallowed.

  async createTask(name: string): Promise<void> {
    const task = await this.api.post<Task>(`${this.base()}/tasks`, { name, duration: 1, status: 'todo' });
    this.upsert(this.tasks, task);
  }

  async updateTask(id: string, fields: Record<string, unknown>): Promise<void> {
    const task = await this.api.patch<Task>(`${this.base()}/tasks/${id}`, fields);
    this.upsert(this.tasks, task);
  }

  async createWhiteboard(name: string): Promise<Whiteboard> {
    const board = await this.api.post<Whiteboard>(`${this.base()}/whiteboards`, { name });
    this.upsert(this.whiteboards, board);
    return board;
  }
}
