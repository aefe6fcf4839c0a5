// The server-sent events parser: events split anywhere between chunks, several in one chunk, every line end,
// multi-line data, comments, and a last event without its closing blank line.
import { describe, expect, it } from 'vitest';
import { createSseParser, readSse, SseEvent } from './sse';

function parse(chunks: string[]): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = createSseParser((e) => events.push(e));
  for (const c of chunks) parser.push(c);
  parser.end();
  return events;
}

const STREAM =
  'event: question\ndata: {"question_id":"q1"}\n\n' +
  'event: delta\ndata: {"text":"Bon"}\n\n' +
  'event: delta\ndata: {"text":"sai 盆景"}\n\n' +
  'event: done\ndata: {"answer":"Bonsai 盆景"}\n\n';

const EXPECTED: SseEvent[] = [
  { event: 'question', data: '{"question_id":"q1"}' },
  { event: 'delta', data: '{"text":"Bon"}' },
  { event: 'delta', data: '{"text":"sai 盆景"}' },
  { event: 'done', data: '{"answer":"Bonsai 盆景"}' },
];

describe('the SSE parser', () => {
  it('reads several events from one chunk', () => {
    expect(parse([STREAM])).toEqual(EXPECTED);
  });

  it('reads events split at every possible place between two chunks', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      expect(parse([STREAM.slice(0, i), STREAM.slice(i)])).toEqual(EXPECTED);
    }
  });

  it('reads events arriving one character at a time', () => {
    expect(parse(STREAM.split(''))).toEqual(EXPECTED);
  });

  it('takes \\r\\n and \\r as line ends, also with \\r\\n split between chunks', () => {
    const crlf = STREAM.replace(/\n/g, '\r\n');
    expect(parse([crlf])).toEqual(EXPECTED);
    for (let i = 0; i <= crlf.length; i++) expect(parse([crlf.slice(0, i), crlf.slice(i)])).toEqual(EXPECTED);
    expect(parse(crlf.split(''))).toEqual(EXPECTED);
    expect(parse([STREAM.replace(/\n/g, '\r')])).toEqual(EXPECTED);
  });

  it('joins data lines, drops one leading space, ignores comments, ids and events without data', () => {
    const text = ': keep-alive\n\nevent: delta\nid: 7\ndata:  two spaces\ndata:tight\ndata\n\nevent: nothing\n\ndata: plain\n\n';
    expect(parse([text])).toEqual([
      { event: 'delta', data: ' two spaces\ntight\n' },
      { event: 'message', data: 'plain' },
    ]);
  });

  it('dispatches a last event that lacks only its closing blank line', () => {
    expect(parse(['event: done\ndata: {"a":1}\n'])).toEqual([{ event: 'done', data: '{"a":1}' }]);
    expect(parse(['event: done\ndata: {"a":1}'])).toEqual([{ event: 'done', data: '{"a":1}' }]);
    expect(parse(['event: done\n'])).toEqual([]);
  });

  it('decodes UTF-8 characters split between network chunks', async () => {
    const bytes = new TextEncoder().encode(STREAM);
    const cut = bytes.indexOf(0xe7) + 1; // inside 盆
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, cut));
        controller.enqueue(bytes.slice(cut));
        controller.close();
      },
    });
    const events: SseEvent[] = [];
    await readSse(body, (e) => events.push(e));
    expect(events).toEqual(EXPECTED);
  });
});
