// Asking with the answer streamed: `POST /api/qa/ask` with `stream: true` answers server-sent events —
// `question` (the question, pending), `delta` (`{"text"}`, pieces that add up to the answer), then `done` (the
// question as recorded) or `pending` (not answered within `wait_secs`). Aborting the request makes the server
// stop the generation and record the question with finish reason `cancelled`.
import type { ApiFailure } from './baseQuery';
import { responseFailure } from './baseQuery';
import { readSse } from './sse';
import type { Question } from './types';

export interface AskBody {
  question: string;
  model_id?: string;
  session_id?: string;
  max_new_tokens?: number;
  temperature?: number;
  wait_secs?: number;
}

export interface StreamHandlers {
  /** The question was accepted (still pending): its id and conversation. */
  onQuestion?: (question: Question) => void;
  /** A piece of the answer, and the answer so far. */
  onDelta?: (piece: string, soFar: string) => void;
}

export interface StreamEnd {
  /** `done`: answered or failed, as recorded; `pending`: still being answered after `wait_secs` (poll it). */
  kind: 'done' | 'pending';
  question: Question;
}

type Fetcher = (url: string, init: RequestInit & { headers?: Record<string, string> }) => Promise<Response>;

function failure(code: string, message: string): ApiFailure {
  return { status: 0, error: { code, message } };
}

/** Asks and reads the answer as it is generated. Rejects with an `ApiFailure` (the API's error, or
 * `network_error`), or with the abort when `signal` aborts. */
export async function askStreamed(fetcher: Fetcher, body: AskBody, handlers: StreamHandlers = {}, signal?: AbortSignal): Promise<StreamEnd> {
  let res: Response;
  try {
    res = await fetcher('/api/qa/ask', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw failure('network_error', e instanceof Error ? e.message : String(e));
  }
  if (!res.ok) throw await responseFailure(res);
  if (!res.body || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    throw failure('client_error', `expected an event stream, got ${res.headers.get('content-type') ?? 'nothing'}`);
  }
  let soFar = '';
  let end: StreamEnd | null = null;
  try {
    await readSse(res.body, ({ event, data }) => {
      if (end || signal?.aborted) return;
      if (event === 'question') handlers.onQuestion?.(JSON.parse(data) as Question);
      else if (event === 'delta') {
        const piece = (JSON.parse(data) as { text?: string }).text ?? '';
        soFar += piece;
        handlers.onDelta?.(piece, soFar);
      } else if (event === 'done' || event === 'pending') end = { kind: event, question: JSON.parse(data) as Question };
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw failure('network_error', e instanceof Error ? e.message : String(e));
  }
  if (!end) throw failure('network_error', 'the answer stream ended before the answer did');
  return end;
}
