// The HTTP side of the client: login (CONTRACT §3), Bearer-authenticated requests with the
// tab's `X-Tab-Id`, the server's JSON errors as `ApiError`, and single-use socket tickets.

export interface User {
  id: string;
  email: string;
  username: string | null;
  display_name: string | null;
  is_admin: boolean;
  is_active: boolean;
}

export interface LoginAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  user: User;
}

/** A refused request: the server's `{"error":{code,message,details}}` and the status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export interface ApiOptions {
  /** Origin of the server; '' for the page's own. */
  baseUrl?: string;
  fetch?: Fetch;
  /** Where the access token survives a reload (sessionStorage in the browser). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  tabId?: string;
}

const TOKEN_KEY = 'liveplan.token';

/** A random id for this tab: the server stamps it on the events our writes cause. */
export function newTabId(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return 'tab-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class Api {
  readonly baseUrl: string;
  readonly tabId: string;
  private readonly fetchFn: Fetch;
  private readonly storage: ApiOptions['storage'];
  private token: string | null;
  /** Called when the server no longer knows this session (a 401): the app signs in again. */
  onSignedOut: (() => void) | null = null;

  constructor(options: ApiOptions = {}) {
    this.baseUrl = options.baseUrl ?? '';
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
    this.storage = options.storage ?? null;
    this.tabId = options.tabId ?? newTabId();
    this.token = this.storage?.getItem(TOKEN_KEY) ?? null;
  }

  get signedIn(): boolean {
    return this.token !== null;
  }

  /** `login` is a username or an email. The answer also sets the session cookie (SSE uses it). */
  async login(login: string, password: string): Promise<LoginAnswer> {
    const field = login.includes('@') ? 'email' : 'username';
    const answer = await this.request<LoginAnswer>('POST', '/api/v1/auth/login', {
      [field]: login,
      password,
    });
    this.token = answer.access_token;
    this.storage?.setItem(TOKEN_KEY, this.token);
    return answer;
  }

  async logout(): Promise<void> {
    try {
      if (this.token) await this.request('POST', '/api/v1/auth/logout');
    } finally {
      this.forget();
    }
  }

  forget(): void {
    this.token = null;
    this.storage?.removeItem(TOKEN_KEY);
  }

  /** A single-use ticket for a live socket (30 s). */
  async ticket(): Promise<string> {
    const answer = await this.request<{ ticket: string }>('POST', '/api/v1/ws/ticket/');
    return answer.ticket;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }
  delete(path: string): Promise<void> {
    return this.request<void>('DELETE', path);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (method !== 'GET' && method !== 'HEAD') headers['X-Tab-Id'] = this.tabId;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchFn(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
      });
    } catch (e) {
      throw new ApiError(0, 'network_error', `the server cannot be reached (${String(e)})`);
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let value: unknown = undefined;
    if (text) {
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined;
      }
    }
    if (!response.ok) {
      const error = (value as { error?: { code?: string; message?: string; details?: unknown } } | undefined)?.error;
      if (response.status === 401 && path !== '/api/v1/auth/login' && this.token !== null) {
        this.forget();
        this.onSignedOut?.();
      }
      throw new ApiError(
        response.status,
        error?.code ?? `http_${response.status}`,
        error?.message ?? `${method} ${path} answered ${response.status}`,
        error?.details,
      );
    }
    return value as T;
  }
}
