// The console's API types are generated from the API's OpenAPI document (openapi.json, which the Rust test
// the_consoles_copy_of_the_openapi_document_is_current keeps equal to what the server serves); this fails
// when schema.d.ts was not regenerated after the document changed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error a plain ES module script without types
import { generate } from '../../scripts/gen-api.mjs';

describe('generated API types', () => {
  it('match the OpenAPI document', async () => {
    const committed = readFileSync(join(__dirname, 'schema.d.ts'), 'utf8');
    const fresh: string = await generate(__dirname);
    expect(committed === fresh, 'src/api/schema.d.ts is stale: run `npm run gen:api` in web/').toBe(true);
  }, 30000);
});
