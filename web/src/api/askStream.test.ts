// Streamed asking: the pieces arrive in order and the recorded question ends it; an API error is the API's
// code; a 401 refreshes the token once (through the same refresh as every other call) and sends again; a
// failed refresh drops the session; aborting rejects with the abort.
import axios, { AxiosAdapter } from 'axios';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { askStreamed } from './askStream';
import { createAuthClient } from './baseQuery';
import { loadTokens, saveTokens } from './tokens';

function sseResponse(chunks: string[], opts: { delayMs?: number; signal?: AbortSignal | null } = {}): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      for (const c of chunks) {
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        if (opts.signal?.aborted) {
          controller.error(new DOMException('The user aborted a request.', 'AbortError'));
          return;
        }
        controller.enqueue(encoder.encode(c));
      }
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

const question = { question_id: 'q1', session_id: 's1', status: 'pending', question: 'Hi?' };
const STREAM = [
  `event: question\ndata: ${JSON.stringify(question)}\n\nevent: delta\ndata: {"text":"Hel`,
  'lo"}\n\nevent: delta\r\ndata: {"text":", world"}\r\n\r\n',
  `event: done\ndata: ${JSON.stringify({ ...question, status: 'answered', answer: 'Hello, world', finish_reason: 'stop' })}\n\n`,
];

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

/** A refresh endpoint (over Axios, as the console's client calls it) that gives `access-2`, or refuses. */
function refresher(works: boolean) {
  let calls = 0;
  const adapter: AxiosAdapter = async (config) => {
    calls++;
    const ok = works;
    const response = { data: ok ? { access_token: 'access-2', refresh_token: 'refresh-2' } : { error: { code: 'invalid_refresh_token', message: 'no' } }, status: ok ? 200 : 401, statusText: '', headers: {}, config };
    if (!ok) throw new axios.AxiosError('failed', '401', config, null, response);
    return response;
  };
  return { http: axios.create({ adapter }), calls: () => calls };
}

beforeEach(() => {
  localStorage.clear();
  saveTokens({ access_token: 'access-1', refresh_token: 'refresh-1' });
});

describe('asking with the answer streamed', () => {
  it('gives the question, each piece with the answer so far, then the recorded question', async () => {
    const fetcher = vi.fn(async () => sseResponse(STREAM));
    const onQuestion = vi.fn();
    const pieces: [string, string][] = [];
    const end = await askStreamed(fetcher, { question: 'Hi?', max_new_tokens: 64 }, { onQuestion, onDelta: (p, s) => pieces.push([p, s]) });
    expect(onQuestion).toHaveBeenCalledWith(question);
    expect(pieces).toEqual([['Hello', 'Hello'], [', world', 'Hello, world']]);
    expect(end.kind).toBe('done');
    expect(end.question.answer).toBe('Hello, world');
    const [url, init] = fetcher.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/qa/ask');
    expect(JSON.parse(String(init.body))).toEqual({ question: 'Hi?', max_new_tokens: 64, stream: true });
  });

  it('ends with `pending` when the answer takes longer than the wait', async () => {
    const end = await askStreamed(async () => sseResponse([STREAM[0], 'lo"}\n\n', `event: pending\ndata: ${JSON.stringify(question)}\n\n`]), { question: 'Hi?' });
    expect(end).toEqual({ kind: 'pending', question });
  });

  it('rejects with the API error code when the ask is refused', async () => {
    const refused = askStreamed(async () => jsonResponse(422, { error: { code: 'no_deployed_model', message: 'none' } }), { question: 'Hi?' });
    await expect(refused).rejects.toEqual({ status: 422, error: { code: 'no_deployed_model', message: 'none' } });
  });

  it('rejects when the stream ends before the answer', async () => {
    await expect(askStreamed(async () => sseResponse([STREAM[0]]), { question: 'Hi?' })).rejects.toMatchObject({ error: { code: 'network_error' } });
  });

  it('refreshes an expired token once and asks again with the new one', async () => {
    const refresh = refresher(true);
    const seen: string[] = [];
    const client = createAuthClient({
      http: refresh.http,
      fetch: async (_url, init) => {
        const auth = (init?.headers as Record<string, string>).Authorization;
        seen.push(auth);
        return auth === 'Bearer access-2' ? sseResponse(STREAM) : jsonResponse(401, { error: { code: 'invalid_token', message: 'expired' } });
      },
    });
    const end = await askStreamed(client.fetch, { question: 'Hi?' });
    expect(end.question.answer).toBe('Hello, world');
    expect(seen).toEqual(['Bearer access-1', 'Bearer access-2']);
    expect(refresh.calls()).toBe(1);
    expect(loadTokens()?.access_token).toBe('access-2');
  });

  it('drops the session when the refresh fails, and rejects with the 401', async () => {
    const lost = vi.fn();
    const client = createAuthClient({
      http: refresher(false).http,
      onSessionLost: lost,
      currentPath: () => '/chat',
      fetch: async () => jsonResponse(401, { error: { code: 'invalid_token', message: 'expired' } }),
    });
    await expect(askStreamed(client.fetch, { question: 'Hi?' })).rejects.toMatchObject({ status: 401, error: { code: 'invalid_token' } });
    expect(lost).toHaveBeenCalledWith('/chat');
    expect(loadTokens()).toBeNull();
  });

  it('rejects with the abort when the reader stops it, after the pieces that came', async () => {
    const controller = new AbortController();
    const pieces: string[] = [];
    const asked = askStreamed(
      async (_url, init) => sseResponse([...STREAM.slice(0, 2), ...STREAM.slice(2)], { delayMs: 20, signal: init.signal }),
      { question: 'Hi?' },
      { onDelta: (p) => {
        pieces.push(p);
        controller.abort();
      } },
      controller.signal,
    );
    await expect(asked).rejects.toMatchObject({ name: 'AbortError' });
    expect(pieces).toEqual(['Hello']);
  });
});
