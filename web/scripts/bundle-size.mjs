// Bundle-size check on the build output (run after `npm run build`): the JavaScript the first page needs
// (the entry chunk, the chunks of that page's route, and everything they import statically) must stay at
// most 300 KB gzipped. Routes are read from Vite's manifest; other pages load on demand.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

const LIMIT = 300 * 1024;
const dist = new URL('../dist/', import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(dist, '.vite/manifest.json'), 'utf8'));

/** The chunk files `key` loads before it runs (itself and its static imports, transitively). */
function closure(key, seen = new Set()) {
  const entry = manifest[key];
  if (!entry) throw new Error(`no chunk for ${key} in the manifest`);
  if (seen.has(entry.file)) return seen;
  seen.add(entry.file);
  for (const dep of entry.imports ?? []) closure(dep, seen);
  return seen;
}

const FIRST_ROUTES = {
  'sign-in (a new visitor)': ['src/auth/SignIn.tsx'],
  'overview (signed in)': ['src/layout/Shell.tsx', 'src/features/overview/OverviewPage.tsx'],
};

let failed = false;
for (const [name, modules] of Object.entries(FIRST_ROUTES)) {
  const files = closure('index.html');
  for (const m of modules) closure(m, files);
  const bytes = [...files].reduce((sum, f) => sum + gzipSync(readFileSync(join(dist, f)), { level: 9 }).length, 0);
  const ok = bytes <= LIMIT;
  failed ||= !ok;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${(bytes / 1024).toFixed(1)} KB gzipped JS in ${files.size} chunks (limit ${LIMIT / 1024} KB)`);
}
process.exit(failed ? 1 : 0);
