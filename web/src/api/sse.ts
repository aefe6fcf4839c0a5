// A small parser of server-sent events (text/event-stream), for answers read with `fetch` (Axios cannot stream
// in a browser). Fed text as it arrives, it calls back once per event: lines end with `\n`, `\r\n` or `\r` (a
// `\r\n` split between two chunks is one line end), an empty line ends an event, `event:` names it (default
// `message`), `data:` lines are joined with `\n`, one space after the colon is dropped, comments (`:`) and other
// fields are ignored, and an event without data is not dispatched. At the end of the stream, an event that
// lacks only its closing blank line is still dispatched (the server always sends it; a proxy may not).

export interface SseEvent {
  event: string;
  data: string;
}

export interface SseParser {
  /** Text as it arrives, in any pieces. */
  push(text: string): void;
  /** The stream ended. */
  end(): void;
}

export function createSseParser(onEvent: (event: SseEvent) => void): SseParser {
  let buffer = '';
  // The last piece ended with `\r`: a `\n` that starts the next one belongs to that line end.
  let afterCr = false;
  let name = '';
  let data: string[] = [];

  const dispatch = () => {
    if (data.length) onEvent({ event: name || 'message', data: data.join('\n') });
    name = '';
    data = [];
  };

  const line = (text: string) => {
    if (text === '') return dispatch();
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  };

  return {
    push(text) {
      if (!text) return;
      if (afterCr && text.startsWith('\n')) text = text.slice(1);
      afterCr = false;
      buffer += text;
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer[i];
        if (c !== '\n' && c !== '\r') continue;
        line(buffer.slice(start, i));
        if (c === '\r') {
          if (i + 1 === buffer.length) afterCr = true;
          else if (buffer[i + 1] === '\n') i++;
        }
        start = i + 1;
      }
      buffer = buffer.slice(start);
    },
    end() {
      if (buffer) line(buffer);
      buffer = '';
      dispatch();
    },
  };
}

/** Reads `body` to its end (aborting its request rejects this with the abort), calling `onEvent` for each event; UTF-8 characters
 * split between chunks are decoded whole. */
export async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: SseEvent) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = createSseParser(onEvent);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.end();
  } finally {
    reader.releaseLock();
  }
}
