// RTK Query's base query over Axios. A 401 on an authenticated call refreshes the access token ONCE for all
// the requests that failed together (they share one refresh), then each is retried with the new token. When
// the refresh fails (the session was signed out, the refresh token expired or was reused), the session is
// dropped and the user is sent to sign-in with the page to come back to. The same client also gives `fetch`
// (for answers read as a stream, which Axios cannot do in a browser), with the same token and refresh.
import axios, { AxiosError, AxiosInstance, AxiosRequestConfig } from 'axios';
import type { BaseQueryFn } from '@reduxjs/toolkit/query';
import { loadTokens, saveTokens, Tokens } from './tokens';

export interface ApiErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** What a failed call gives the page: the HTTP status and the API's error (or a network error). */
export interface ApiFailure {
  status: number;
  error: ApiErrorBody;
}

export interface RequestArgs {
  url: string;
  method?: AxiosRequestConfig['method'];
  body?: unknown;
  params?: Record<string, unknown>;
  /** Upload progress, 0..1. */
  onProgress?: (fraction: number) => void;
  /** Calls that need no token (sign in). */
  anonymous?: boolean;
}

export interface AuthClientOptions {
  http?: AxiosInstance;
  /** Called once when the session cannot be refreshed; `returnTo` is the page to come back to. */
  onSessionLost?: (returnTo: string) => void;
  currentPath?: () => string;
  /** The `fetch` that `client.fetch` sends with (default: the browser's). */
  fetch?: typeof fetch;
}

export function toFailure(e: unknown): ApiFailure {
  const err = e as AxiosError<{ error?: ApiErrorBody }>;
  if (err.response) {
    const body = err.response.data?.error;
    return {
      status: err.response.status,
      error: body && typeof body.code === 'string' ? body : { code: `http_${err.response.status}`, message: err.message },
    };
  }
  if (err?.isAxiosError) return { status: 0, error: { code: 'network_error', message: err.message } };
  return { status: 0, error: { code: 'client_error', message: e instanceof Error ? e.message : String(e) } };
}

/** The failure a `fetch` response that is not OK holds: the API's `{error: {code, message}}` when it is one. */
export async function responseFailure(res: Response): Promise<ApiFailure> {
  let body: { error?: ApiErrorBody } | null = null;
  try {
    body = (await res.json()) as { error?: ApiErrorBody };
  } catch {
    // not JSON (a proxy's page, an empty body)
  }
  const error = body?.error;
  return {
    status: res.status,
    error: error && typeof error.code === 'string' ? error : { code: `http_${res.status}`, message: res.statusText || `HTTP ${res.status}` },
  };
}

/** A client whose calls share one refresh of the access token. */
export function createAuthClient(options: AuthClientOptions = {}) {
  const http = options.http ?? axios.create();
  let refreshing: Promise<Tokens | null> | null = null;
  let lost = false;

  /** One refresh for everyone who asks while it runs. */
  function refresh(): Promise<Tokens | null> {
    if (!refreshing) {
      const current = loadTokens();
      refreshing = (async () => {
        if (!current) return null;
        try {
          const res = await http.post<Tokens>('/api/auth/refresh', { refresh_token: current.refresh_token });
          const next = { access_token: res.data.access_token, refresh_token: res.data.refresh_token };
          saveTokens(next);
          return next;
        } catch {
          return null;
        }
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  function sessionLost() {
    if (lost) return;
    lost = true;
    saveTokens(null);
    const path = options.currentPath?.() ?? '/';
    options.onSessionLost?.(path);
    setTimeout(() => {
      lost = false;
    }, 0);
  }

  async function request<T>(args: RequestArgs): Promise<T> {
    const send = (token: string | undefined) =>
      http.request<T>({
        url: args.url,
        method: args.method ?? 'GET',
        data: args.body,
        params: args.params,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        onUploadProgress: args.onProgress
          ? (e) => args.onProgress?.(e.total ? e.loaded / e.total : 0)
          : undefined,
      });
    const used = args.anonymous ? undefined : loadTokens()?.access_token;
    try {
      return (await send(used)).data;
    } catch (e) {
      const status = (e as AxiosError).response?.status;
      if (args.anonymous || status !== 401 || !used) throw e;
      // Another call may have refreshed already while this one was in flight.
      const now = loadTokens()?.access_token;
      const token = now && now !== used ? now : (await refresh())?.access_token;
      if (!token) {
        sessionLost();
        throw e;
      }
      try {
        return (await send(token)).data;
      } catch (again) {
        if ((again as AxiosError).response?.status === 401) sessionLost();
        throw again;
      }
    }
  }

  /** `fetch` with the access token; a 401 refreshes it (once, shared with every other call) and sends again.
   * The answer is returned whatever its status (after a failed refresh, the session is dropped first). */
  async function authorizedFetch(url: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> {
    const send = (token: string | undefined) => {
      const headers = { ...init.headers, ...(token ? { Authorization: `Bearer ${token}` } : {}) };
      return options.fetch ? options.fetch(url, { ...init, headers }) : fetch(url, { ...init, headers });
    };
    const used = loadTokens()?.access_token;
    const first = await send(used);
    if (first.status !== 401 || !used) return first;
    const now = loadTokens()?.access_token;
    const token = now && now !== used ? now : (await refresh())?.access_token;
    if (!token) {
      sessionLost();
      return first;
    }
    const again = await send(token);
    if (again.status === 401) sessionLost();
    return again;
  }

  const baseQuery: BaseQueryFn<RequestArgs | string, unknown, ApiFailure> = async (args) => {
    try {
      return { data: await request(typeof args === 'string' ? { url: args } : args) };
    } catch (e) {
      return { error: toFailure(e) };
    }
  };

  return { request, refresh, baseQuery, fetch: authorizedFetch };
}
