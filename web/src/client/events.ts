// The event catalog (CONTRACT §5) and the one shape both transports are turned into.

export const EVENT_TYPES = [
  'project_created', 'project_updated', 'project_deleted', 'project_calendar_changed',
  'member_added', 'member_role_changed', 'member_removed',
  'task_created', 'task_updated', 'task_deleted', 'tasks_reordered', 'tasks_bulk_mutated',
  'dependency_created', 'dependency_updated', 'dependency_deleted', 'dependency_accepted', 'dependency_rejected',
  'resource_created', 'resource_updated', 'resource_deleted',
  'assignment_created', 'assignment_updated', 'assignment_deleted',
  'calendar_created', 'calendar_updated', 'calendar_deleted',
  'risk_created', 'risk_updated', 'risk_deleted',
  'sprint_created', 'sprint_updated', 'sprint_deleted', 'sprint_activated', 'sprint_closed',
  'sprint_cancelled', 'sprint_scope_changed',
  'baseline_created', 'baseline_activated', 'baseline_deleted',
  'label_created', 'label_updated', 'label_deleted', 'board_config_updated',
  'task_comment_created', 'task_comment_updated', 'task_comment_deleted',
  'task_attachment_created', 'task_attachment_deleted',
  'whiteboard_created', 'whiteboard_updated', 'whiteboard_deleted',
  'version_created', 'version_deleted',
  'cpm_complete', 'cpm_error', 'task_dates_updated',
  'user_updated', 'database_wiped', 'database_projects_wiped',
  'presence_join', 'presence_leave',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

const KNOWN: ReadonlySet<string> = new Set(EVENT_TYPES);

export function isEventType(name: string): name is EventType {
  return KNOWN.has(name);
}

export interface IdPayload { id: string }
export interface TaskUpdatedPayload { id: string; changed_fields: string[]; version: number; actor_id?: string; ts?: string }
export interface MemberPayload { membership_id: string; user_id: string; role: number }
export interface PresencePayload { user_id: string; display_name: string }
export interface CpmCompletePayload { project_finish: string | null; critical_path: string[] }
export interface ScheduledTask {
  id: string;
  early_start: string | null;
  early_finish: string | null;
  late_start: string | null;
  late_finish: string | null;
  total_float: number | null;
  free_float: number | null;
  is_critical: boolean;
  start_date?: string | null;
  duration?: number | null;
}
export interface TaskDatesUpdatedPayload { count: number; tasks?: ScheduledTask[]; truncated?: boolean }

/** The payload each event type carries; anything not listed carries at least `{id}`. */
export interface PayloadOf {
  task_updated: TaskUpdatedPayload;
  member_added: MemberPayload;
  member_role_changed: MemberPayload;
  member_removed: MemberPayload;
  presence_join: PresencePayload;
  presence_leave: PresencePayload;
  cpm_complete: CpmCompletePayload;
  task_dates_updated: TaskDatesUpdatedPayload;
}
export type Payload<T extends EventType> = T extends keyof PayloadOf ? PayloadOf[T] : IdPayload & Record<string, unknown>;

/** One event as the app sees it, whichever transport carried it. */
export interface LiveEvent<T extends EventType = EventType> {
  type: T;
  /** The minimal payload (native socket), or the record after the change (SSE carries only that). */
  payload: Payload<T>;
  /** The full record after the change when the transport carries it (SSE). */
  data?: Record<string, unknown>;
  /** null for ephemeral events (presence). */
  seq: number | null;
  tabId: string | null;
  replayed: boolean;
}

// SSE names (CONTRACT §7) back to canonical ones. Tasks are PUNT tickets; the other names have
// their first `_` turned into `.`.
const SSE_SPECIAL: Record<string, EventType> = {
  'ticket.created': 'task_created',
  'ticket.updated': 'task_updated',
  'ticket.moved': 'task_updated',
  'ticket.deleted': 'task_deleted',
  'member.added': 'member_added',
  'member.removed': 'member_removed',
  'member.role.updated': 'member_role_changed',
  'sprint.started': 'sprint_activated',
  'sprint.completed': 'sprint_closed',
  'database.wiped': 'database_wiped',
  'database.projects.wiped': 'database_projects_wiped',
};

export function canonicalFromSse(name: string): EventType | null {
  const special = SSE_SPECIAL[name];
  if (special) return special;
  const canonical = name.replace('.', '_');
  return isEventType(canonical) ? canonical : null;
}

/** What a transport hands the connection: an event, a resync demand, or nothing of interest. */
export type Frame =
  | { kind: 'event'; event: LiveEvent }
  | { kind: 'resync'; latestSeq: number }
  | { kind: 'ignore' };

/** A native WebSocket text frame (CONTRACT §6). */
export function parseWsFrame(text: string): Frame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'ignore' };
  }
  if (!value || typeof value !== 'object') return { kind: 'ignore' };
  const f = value as Record<string, unknown>;
  const type = f.event_type;
  if (type === 'resync_required') {
    const latest = (f.payload as { latest_seq?: unknown } | undefined)?.latest_seq;
    return { kind: 'resync', latestSeq: typeof latest === 'number' ? latest : 0 };
  }
  if (typeof type !== 'string' || !isEventType(type)) return { kind: 'ignore' };
  return {
    kind: 'event',
    event: {
      type,
      payload: (f.payload ?? {}) as Payload<EventType>,
      seq: typeof f.seq === 'number' ? f.seq : null,
      tabId: typeof f.tab_id === 'string' ? f.tab_id : null,
      replayed: f.replayed === true,
    },
  };
}

/** An SSE message: its `data:` text and its `id:` (the seq), CONTRACT §7. */
export function parseSseMessage(text: string, id: string): Frame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'ignore' };
  }
  if (!value || typeof value !== 'object') return { kind: 'ignore' };
  const m = value as Record<string, unknown>;
  if (m.type === 'resync_required') {
    const latest = (m.data as { latest_seq?: unknown } | undefined)?.latest_seq;
    return { kind: 'resync', latestSeq: typeof latest === 'number' ? latest : 0 };
  }
  if (typeof m.type !== 'string') return { kind: 'ignore' };
  const type = canonicalFromSse(m.type);
  if (!type) return { kind: 'ignore' };
  const data = (m.data ?? {}) as Record<string, unknown>;
  const seq = id !== '' && /^\d+$/.test(id) ? Number(id) : null;
  return {
    kind: 'event',
    event: {
      type,
      payload: data as unknown as Payload<EventType>,
      data,
      seq,
      tabId: typeof m.tabId === 'string' ? m.tabId : null,
      replayed: false,
    },
  };
}
