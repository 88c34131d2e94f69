import { describe, expect, it } from 'vitest';
import { dayNumber, isoDay } from './dom';
import { hierarchy } from './gantt';
import type { Task } from './project';

const task = (id: string, parent: string | null = null, rank: string | null = null): Task => ({
  id,
  parent_id: parent,
  name: id,
  status: 'todo',
  column_id: null,
  rank,
  duration: 1,
  is_milestone: false,
  early_start: null,
  early_finish: null,
  is_critical: false,
  version: 1,
});

describe('the Gantt rows', () => {
  it('puts each parent before its children, siblings by rank then creation order', () => {
    const rows = hierarchy([task('03', '01'), task('02'), task('01'), task('04', '01'), task('05', '03'), task('06', null, 'a')]);
    expect(rows.map((r) => [r.task.id, r.depth, r.hasChildren])).toEqual([
      ['01', 0, true],
      ['03', 1, true],
      ['05', 2, false],
      ['04', 1, false],
      ['02', 0, false],
      ['06', 0, false],
    ]);
  });

  it('shows a task whose parent is unknown at the top, and survives a parent cycle', () => {
    const rows = hierarchy([task('a', 'gone'), task('b', 'c'), task('c', 'b')]);
    expect(rows.map((r) => r.task.id)).toEqual(['a', 'b', 'c']);
    const withRoot = hierarchy([task('r'), task('b', 'r'), task('c', 'b')]);
    expect(withRoot.map((r) => r.depth)).toEqual([0, 1, 2]);
  });

  it('counts days across months and years', () => {
    expect(dayNumber('2026-03-02') - dayNumber('2026-02-27')).toBe(3);
    expect(isoDay(dayNumber('2026-12-31') + 1)).toBe('2027-01-01');
    expect(dayNumber('2026-03-02T09:00:00')).toBe(dayNumber('2026-03-02'));
  });
});
