// The refresh-once logic: parallel calls that meet a 401 share ONE refresh and are retried with the new
// token; a failed refresh drops the session once and sends the user to sign-in with the return path. The
// transport is an Axios adapter that plays a server with one valid access token at a time.
import axios, { AxiosAdapter, AxiosError, InternalAxiosRequestConfig } from 'axios';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createAuthClient } from './baseQuery';
import { loadTokens, saveTokens } from './tokens';

function fakeServer(opts: { refreshWorks: boolean }) {
  let valid = 'access-1';
  let refreshes = 0;
  const seen: string[] = [];
  const reply = (config: InternalAxiosRequestConfig, status: number, data: unknown) => {
    const response = { data, status, statusText: String(status), headers: {}, config };
    if (status >= 400) return Promise.reject(new AxiosError('failed', String(status), config, null, response));
    return Promise.resolve(response);
  };
  const adapter: AxiosAdapter = async (config) => {
    await new Promise((r) => setTimeout(r, 5));
    if (config.url === '/api/auth/refresh') {
      refreshes++;
      if (!opts.refreshWorks) return reply(config, 401, { error: { code: 'invalid_refresh_token', message: 'no' } });
      valid = `access-${refreshes + 1}`;
      return reply(config, 200, { access_token: valid, refresh_token: `refresh-${refreshes + 1}` });
    }
    const auth = String(config.headers?.Authorization ?? '');
    seen.push(auth);
    if (auth !== `Bearer ${valid}`) return reply(config, 401, { error: { code: 'invalid_token', message: 'expired' } });
    return reply(config, 200, { url: config.url });
  };
  return {
    http: axios.create({ adapter }),
    expire: () => {
      valid = 'access-rotated-away';
    },
    get refreshes() {
      return refreshes;
    },
    seen,
  };
}

beforeEach(() => {
  localStorage.clear();
  saveTokens({ access_token: 'access-1', refresh_token: 'refresh-1' });
});

describe('the refresh-once base query', () => {
  it('refreshes once for all parallel requests that got a 401 and retries each with the new token', async () => {
    const server = fakeServer({ refreshWorks: true });
    const lost = vi.fn();
    const client = createAuthClient({ http: server.http, onSessionLost: lost });
    server.expire();
    const results = await Promise.all(['/a', '/b', '/c', '/d'].map((url) => client.request<{ url: string }>({ url })));
    expect(results.map((r) => r.url)).toEqual(['/a', '/b', '/c', '/d']);
    expect(server.refreshes).toBe(1);
    expect(loadTokens()).toEqual({ access_token: 'access-2', refresh_token: 'refresh-2' });
    expect(server.seen.filter((s) => s === 'Bearer access-2')).toHaveLength(4);
    expect(lost).not.toHaveBeenCalled();
  });

  it('does not refresh when the token is still valid', async () => {
    const server = fakeServer({ refreshWorks: true });
    const client = createAuthClient({ http: server.http });
    await client.request({ url: '/a' });
    expect(server.refreshes).toBe(0);
  });

  it('drops the session once and reports the return path when the refresh fails', async () => {
    const server = fakeServer({ refreshWorks: false });
    const lost = vi.fn();
    const client = createAuthClient({ http: server.http, onSessionLost: lost, currentPath: () => '/training/42?tab=loss' });
    server.expire();
    const outcomes = await Promise.allSettled(['/a', '/b', '/c'].map((url) => client.request({ url })));
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    expect(server.refreshes).toBe(1);
    expect(lost).toHaveBeenCalledTimes(1);
    expect(lost).toHaveBeenCalledWith('/training/42?tab=loss');
    expect(loadTokens()).toBeNull();
  });

  it('gives the API error to the page through the RTK base query', async () => {
    const server = fakeServer({ refreshWorks: false });
    const client = createAuthClient({ http: server.http });
    server.expire();
    const result = await client.baseQuery('/a', {} as never, {});
    expect(result.error).toEqual({ status: 401, error: { code: 'invalid_token', message: 'expired' } });
  });
});
