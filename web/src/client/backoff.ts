// Reconnect delays: exponential backoff with full jitter (AWS's "full jitter"): the n-th retry
// waits a uniformly random time in [0, min(cap, base·2^n)), so a fleet of clients cut off
// together does not come back together.

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1000, capMs: 30_000, random: Math.random };

/** The delay before retry `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(options.random() * ceiling);
}
