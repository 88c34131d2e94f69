import { describe, expect, it } from 'vitest';
import { Api, ApiError } from './api';

function recorder(answers: Array<[number, unknown]>) {
  const calls: Array<{ url: string; init: RequestInit }> = [];
  const fetch = async (url: string, init?: RequestInit) => {
    calls.push({ url, init: init ?? {} });
    const [status, body] = answers.shift() ?? [500, {}];
    return new Response(status === 204 ? null : JSON.stringify(body), { status });
  };
  return { calls, fetch };
}

function memoryStorage() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}

describe('Api', () => {
  it('logs in by username or email, then sends the Bearer token and X-Tab-Id on writes only', async () => {
    const r = recorder([
      [200, { access_token: 'tok', token_type: 'Bearer', expires_in: 900, user: { id: 'u' } }],
      [201, { id: 't' }],
      [200, []],
      [200, { ticket: 'T' }],
    ]);
    const storage = memoryStorage();
    const api = new Api({ fetch: r.fetch, tabId: 'tab-1', storage });
    await api.login('alex', 'pw');
    expect(JSON.parse(r.calls[0].init.body as string)).toEqual({ username: 'alex', password: 'pw' });
    expect(storage.getItem('liveplan.token')).toBe('tok');
    await api.post('/api/v1/projects/p/tasks', { name: 'x' });
    const h = r.calls[1].init.headers as Record<string, string>;
    expect(h.Authorization).toBe('Bearer tok');
    expect(h['X-Tab-Id']).toBe('tab-1');
    await api.get('/api/v1/projects');
    expect((r.calls[2].init.headers as Record<string, string>)['X-Tab-Id']).toBeUndefined();
    expect(await api.ticket()).toBe('T');
    expect(r.calls[3].url).toBe('/api/v1/ws/ticket/');
    const byEmail = recorder([[200, { access_token: 'x', user: {} }]]);
    await new Api({ fetch: byEmail.fetch }).login('a@b.c', 'pw');
    expect(JSON.parse(byEmail.calls[0].init.body as string)).toEqual({ email: 'a@b.c', password: 'pw' });
  });

  it("turns the server's JSON error into an ApiError and forgets a dead token", async () => {
    const r = recorder([
      [403, { error: { code: 'forbidden', message: 'viewers cannot write' } }],
      [401, { error: { code: 'unauthorized', message: 'sign in' } }],
    ]);
    const storage = memoryStorage();
    storage.setItem('liveplan.token', 'old');
    const api = new Api({ fetch: r.fetch, storage });
    let signedOut = 0;
    api.onSignedOut = () => signedOut++;
    expect(api.signedIn).toBe(true);
    const e = (await api.patch('/api/v1/projects/p/tasks/t', { name: 'y' }).catch((x: ApiError) => x)) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect([e.status, e.code, e.message]).toEqual([403, 'forbidden', 'viewers cannot write']);
    await api.get('/api/v1/users/me').catch(() => {});
    expect(api.signedIn).toBe(false);
    expect(storage.getItem('liveplan.token')).toBeNull();
    expect(signedOut).toBe(1);
  });

  it('reports an unreachable server as a network error', async () => {
    const api = new Api({ fetch: async () => Promise.reject(new TypeError('Failed to fetch')) });
    const e = (await api.get('/x').catch((x: ApiError) => x)) as ApiError;
    expect([e.status, e.code]).toEqual([0, 'network_error']);
  });
});
