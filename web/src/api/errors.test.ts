// Every error code the API can answer with has a message in both languages: the codes are read from the
// API's source (api/src: `code: "..."`, `unauthenticated("...")`, `field("...")` and the fixed codes of
// error.rs), so a new code without a message fails here.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeError, ERROR_MESSAGES } from './errors';

function rustFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? rustFiles(path) : path.endsWith('.rs') ? [path] : [];
  });
}

function documentedCodes(): Set<string> {
  const root = join(__dirname, '../../../api/src');
  const codes = new Set<string>();
  const patterns = [
    /code:\s*"([a-z_]+)"/g,
    /unauthenticated\(\s*"([a-z_]+)"/g,
    /ApiError::field\(\s*"([a-z_]+)"/g,
    /StatusCode::[A-Z_]+,\s*"([a-z_]+)"/g,
  ];
  for (const file of rustFiles(root)) {
    const text = readFileSync(file, 'utf8');
    for (const p of patterns) for (const m of text.matchAll(p)) codes.add(m[1]);
  }
  return codes;
}

describe('error messages', () => {
  it('cover every code the API documents, in English and Chinese', () => {
    const codes = documentedCodes();
    expect(codes.size).toBeGreaterThan(30);
    for (const code of ['forbidden', 'not_found', 'rate_limited', 'internal', 'file_infected', 'dataset_too_large']) {
      expect(codes).toContain(code);
    }
    const missing = [...codes].filter((c) => !ERROR_MESSAGES[c]?.en || !ERROR_MESSAGES[c]?.zh);
    expect(missing).toEqual([]);
  });

  it('name the field and reason of a validation failure', () => {
    const failure = { status: 422, error: { code: 'validation_failed', message: 'x', details: { field: 'config.rank', reason: 'must be 1 to 256' } } };
    expect(describeError(failure, 'en')).toBe('Some values are not valid. config.rank: must be 1 to 256');
    expect(describeError(failure, 'zh')).toContain('config.rank');
  });

  it('read 413, 415 and infected uploads as sentences', () => {
    expect(describeError({ status: 413, error: { code: 'dataset_too_large', message: '' } }, 'en')).toMatch(/larger than the upload limit/);
    expect(describeError({ status: 415, error: { code: 'unsupported_content', message: '' } }, 'zh')).toMatch(/JSONL/);
    expect(describeError({ status: 422, error: { code: 'file_infected', message: '', details: { signature: 'Eicar-Test' } } }, 'en')).toBe(
      'The file contains a virus and was refused. (Eicar-Test)',
    );
  });

  it('fall back to the server message for an unknown code', () => {
    expect(describeError({ status: 418, error: { code: 'teapot', message: 'I am a teapot' } }, 'en')).toBe('I am a teapot');
  });
});

describe('errors thrown outside the API slice', () => {
  it('are read too (a network failure, a JavaScript error)', () => {
    expect(describeError(new Error('boom'), 'en')).toBe('boom');
    expect(describeError({ isAxiosError: true, message: 'Network Error' }, 'zh')).toBe('无法连接服务器。');
  });
});
