// End-to-end tests of the console: a real `bonsai serve` (the debug binary, a fresh database, its own NATS
// prefix and data folder, the built console, a demo-tiny model, a short access-token lifetime) driven by
// Debian's Chromium through playwright-core. Every scenario saves screenshots of the pages it visits into a
// folder printed at the start. Usage: node e2e/run.mjs [filter], where the filter is a part of a scenario's
// name, or several parts separated by commas (`admin-users,chat-streams`); scenarios run in their order here.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const repo = resolve(new URL('../..', import.meta.url).pathname);
const web = join(repo, 'web');
const bin = process.env.BONSAI_BIN ?? join(repo, 'target/debug/bonsai');
const filter = process.argv[2] ?? '';
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const shots = process.env.BONSAI_E2E_SCREENSHOTS ?? join(web, 'e2e-artifacts', stamp);
mkdirSync(shots, { recursive: true });
console.log(`screenshots: ${shots}`);

const ADMIN_PASSWORD = 'e2e-admin-password';
const XSS = `<img src=x onerror="window.__xss=1">faq<script>window.__xss=2</script>`;
// Names and questions people type, holding markup that would open a dialog if it ever became an element.
const TAG = '<img src=x onerror=alert(1)>';
const TASK_NAME = `faq quick ${TAG}`;
const MODEL_NAME = `faq bot ${TAG}`;
// The installed tiny-babble model deployed as it is (untrained): it babbles until its token limit, which makes
// a long answer to stream and to stop.
const BABBLE_NAME = `babble ${TAG}`;

function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function startServer() {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it first (cargo build --bin bonsai)`);
  if (!existsSync(join(web, 'dist/index.html'))) throw new Error('web/dist is missing: run `npm run build` in web/');
  const id = Math.random().toString(36).slice(2, 10);
  const data = mkdtempSync(join(tmpdir(), 'bonsai_e2e_'));
  execFileSync(bin, ['model', 'init-tiny', join(data, 'models/demo-tiny'), '--corpus', join(repo, 'demo/faq.jsonl')], { stdio: 'ignore' });
  // A bigger random model (58M parameters; after demo-tiny in the base model list): it babbles slowly enough
  // for an answer to be seen growing and to be stopped half-way.
  execFileSync(bin, ['model', 'init-tiny', join(data, 'models/tiny-babble'), '--corpus', join(repo, 'demo/faq.jsonl'),
    '--hidden-size', '768', '--intermediate-size', '2048', '--layers', '8', '--heads', '12'], { stdio: 'ignore' });
  const port = await freePort();
  const database = `bonsai_e2e_${id}`;
  const secret = `e2e-secret-${id}-long-enough`;
  const env = {
    ...process.env,
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
    BONSAI_NATS_PREFIX: `e2e${id}`,
    BONSAI_DATA_DIR: data,
    BONSAI_ADMIN_PASSWORD: ADMIN_PASSWORD,
    BONSAI_HTTP_ADDR: `127.0.0.1:${port}`,
    BONSAI_JWT_SECRET: secret,
    BONSAI__CONSOLE_DIR: join(web, 'dist'),
    BONSAI__RATE_LIMIT__REQUESTS_PER_SECOND: '0',
    BONSAI__RATE_LIMIT__QUESTIONS_PER_MINUTE: '0',
    BONSAI__TRAINING_DEVICES: 'cpu',
    BONSAI__ALERTS__CHECK_EVERY_SECS: '0',
    // A test scoring under half raises an alert (the alerts scenario acts on one).
    BONSAI__ALERTS__MIN_ACCURACY: '0.5',
    BONSAI__FILE_GC_INTERVAL_SECS: '0',
    BONSAI_LOG_FORMAT: 'text',
    RUST_LOG: process.env.RUST_LOG ?? 'warn',
  };
  const log = join(shots, 'server.log');
  const out = (await import('node:fs')).openSync(log, 'w');
  const child = spawn(bin, ['serve'], { cwd: repo, env, stdio: ['ignore', out, out] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) throw new Error(`bonsai serve exited (${child.exitCode}); see ${log}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    base,
    secret,
    stop() {
      child.kill('SIGTERM');
      setTimeout(() => {
        try {
          execFileSync('dropdb', ['-h', '127.0.0.1', '-U', 'postgres', '--if-exists', '--force', database], { stdio: 'ignore' });
        } catch {
          // best effort
        }
        rmSync(data, { recursive: true, force: true });
      }, 1500);
    },
  };
}

// ---------- helpers ----------

async function api(base, path, { token, method = 'GET', body } = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

function expect(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
}

async function until(what, check, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for: ${what}${last ? ` (${last.message})` : ''}`);
}

function scenarioKit(page, name) {
  let n = 0;
  return {
    async shot(label) {
      n += 1;
      await page.screenshot({ path: join(shots, `${name}-${String(n).padStart(2, '0')}-${label}.png`), fullPage: true });
    },
  };
}

async function signIn(page, base, username, password) {
  await page.goto(`${base}/sign-in`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=main-menu]');
}

async function menuTexts(page) {
  return (await page.locator('[data-testid=main-menu] li').allInnerTexts()).map((s) => s.trim());
}

/** `token` (a JWT of this server) signed again with its expiry an hour ago: what a tab holds after a break. */
function expired(token, secret) {
  const [header, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  claims.exp = now - 3600;
  if (claims.iat) claims.iat = now - 3600 - 900;
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** Nothing the users typed became an element: no `<img src=x>` and no inline script on the page. */
async function noInjected(page, where) {
  const found = await page.evaluate(() => document.querySelectorAll('img[src="x"], script:not([src])').length);
  expect(found === 0, `no injected element on ${where} (${found} found)`);
}

/** Waits until `selector`'s text contains `text` (as text, markup and all). */
async function showsText(page, selector, text, timeoutMs = 15000) {
  await until(`${selector} shows ${JSON.stringify(text)}`, async () => (await page.locator(selector).allInnerTexts()).some((s) => s.includes(text)), timeoutMs);
}

/** The unread (active) alert count the header shows (0: no badge). */
async function headerCount(page) {
  const badge = page.locator('.ant-layout-header a[href="/alerts"] .ant-badge-count');
  return (await badge.count()) ? Number(await badge.first().getAttribute('title')) : 0;
}

async function token(base, username, password) {
  const res = await api(base, '/api/auth/login', { method: 'POST', body: { username, password } });
  expect(res.status === 200, `${username} signs in through the API (${res.status})`);
  return res.json.access_token;
}

/** Picks `option` in the antd Select whose wrapper is `selector`. */
async function choose(page, selector, option) {
  await page.click(`${selector} .ant-select-selector`);
  await page.locator('.ant-select-dropdown:visible .ant-select-item-option').filter({ hasText: option }).first().click();
}

/** The babbling model (tiny-babble registered as installed, untrained), deployed by the admin; registered and
 * deployed here the first time, so the scenarios that chat with it need nothing before them. */
async function babbleModel(base) {
  const bearer = await token(base, 'admin', ADMIN_PASSWORD);
  const named = await api(base, `/api/models?name=${encodeURIComponent(BABBLE_NAME)}&page_size=10`, { token: bearer });
  let model = named.json.items.find((m) => m.deployed);
  if (model) return model;
  let id = named.json.items[0]?.id;
  if (!id) {
    const registered = await api(base, '/api/models', { token: bearer, method: 'POST', body: { name: BABBLE_NAME, base_model_id: 'tiny-babble' } });
    expect(registered.status === 201, `the babbling model registered (${registered.status} ${JSON.stringify(registered.json)})`);
    id = registered.json.id;
  }
  await until('the babbling model exported', async () => (await api(base, `/api/models/${id}`, { token: bearer })).json.status === 'ready', 180000);
  const deployed = await api(base, `/api/models/${id}/deploy`, { token: bearer, method: 'POST' });
  expect(deployed.status < 300, `the babbling model deployed (${deployed.status})`);
  await until('the babbling model in service', async () => {
    model = (await api(base, `/api/models/${id}`, { token: bearer })).json;
    return model.deployed;
  }, 60000);
  return model;
}

/** Records, in the page, every text the live (streaming) answer shows and its state, as React renders them. */
async function recordLiveAnswer(page) {
  await page.evaluate(() => {
    window.__partials = [];
    const look = () => {
      const turn = document.querySelector('[data-testid=turn][data-live=true]');
      if (!turn) return;
      const text = turn.querySelector('[data-testid=answer]')?.textContent ?? '';
      const state = turn.getAttribute('data-state');
      const last = window.__partials[window.__partials.length - 1];
      if (!last || last.text !== text || last.state !== state) window.__partials.push({ text, state, at: performance.now() });
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

/** The admin's recorded question asking `question`, once it is no longer pending. */
async function recordedQuestion(base, question, timeoutMs = 60000) {
  const bearer = await token(base, 'admin', ADMIN_PASSWORD);
  let found;
  await until(`the question ${JSON.stringify(question)} recorded`, async () => {
    const history = await api(base, '/api/qa/history?page_size=20', { token: bearer });
    const item = history.json.items.find((q) => q.question === question);
    if (!item) return false;
    found = (await api(base, `/api/qa/questions/${item.question_id}`, { token: bearer })).json;
    return found.status !== 'pending';
  }, timeoutMs);
  return found;
}

/** Opens the chat on the babbling model with `maxTokens`. */
async function chatWithBabble(page, base, maxTokens) {
  await babbleModel(base);
  await signIn(page, base, 'admin', ADMIN_PASSWORD);
  await page.click('[data-testid=main-menu] >> text=Chat');
  await page.waitForSelector('#question-input');
  await choose(page, '[data-testid=model-select]', BABBLE_NAME);
  await showsText(page, '[data-testid=model-select]', BABBLE_NAME);
  await page.fill('#max-tokens', String(maxTokens));
  await page.press('#max-tokens', 'Tab');
}

// ---------- scenarios ----------

const scenarios = [
  {
    name: 'admin-users-audit',
    async run({ page, base, shot }) {
      // The page is served with a policy that allows no inline script.
      const index = await fetch(`${base}/admin/users`);
      const csp = index.headers.get('content-security-policy') ?? '';
      const scripts = csp.split(';').find((d) => d.trim().startsWith('script-src')) ?? '';
      expect(index.ok && scripts.includes("'self'") && !scripts.includes('unsafe-inline'), `a CSP without inline scripts: ${csp}`);
      await signIn(page, base, 'admin', ADMIN_PASSWORD);
      await shot('overview');
      await page.click('text=Users');
      await page.waitForSelector('text=Create a user');
      for (const [username, role] of [['tina', 'trainer'], ['uma', 'trainer']]) {
        await page.click('button:has-text("Create a user")');
        await page.fill('#new-username', username);
        await page.fill('#new-email', `${username}@example.com`);
        await page.fill('#new-password', `${username}-password`);
        await choose(page, '.ant-modal-content .ant-form-item:has(#new-role)', role);
        await page.click('.ant-modal-content button[type=submit]');
        await page.waitForSelector(`td:has-text("${username}@example.com")`);
      }
      await shot('users-created');
      // uma becomes a plain user.
      await choose(page, '[data-testid=role-uma]', 'user');
      await page.waitForSelector('text=Saved');
      await shot('role-changed');
      await page.click('a:has-text("uma")');
      await page.waitForSelector('[data-testid=audit-timeline]');
      await until('the timeline shows the creation and the role change', async () => {
        const text = await page.locator('[data-testid=audit-timeline]').innerText();
        return text.includes('UserRegistered') && text.includes('RoleChanged') && text.includes('"role": "user"');
      });
      await shot('uma-timeline');
      // tina's own timeline too.
      await page.goto(`${base}/admin/users`);
      await page.click('a:has-text("tina")');
      await until('tina was registered as a trainer', async () =>
        (await page.locator('[data-testid=audit-timeline]').innerText()).includes('"role": "trainer"'));
      await shot('tina-timeline');
    },
  },
  {
    name: 'user-sees-no-training',
    async run({ page, base, shot }) {
      await signIn(page, base, 'uma', 'uma-password');
      const menu = await menuTexts(page);
      expect(menu.includes('Chat') && !menu.includes('Datasets') && !menu.includes('Training'), `a user's menu without datasets or training: ${menu}`);
      await shot('user-menu');
      await page.goto(`${base}/training`);
      await page.waitForSelector('[data-testid=not-allowed]');
      expect(await page.isVisible('text=Not allowed'), 'the not-allowed page');
      await shot('training-not-allowed');
      await page.goto(`${base}/datasets/0190b2d4-0000-7000-8000-000000000000`);
      await page.waitForSelector('[data-testid=not-allowed]');
      // In Chinese, Ant Design's own words follow (the pager, the empty state).
      await page.click('.ant-layout-header .ant-segmented-item:has-text("中文")');
      await page.waitForSelector('text=无权访问');
      await page.click('[data-testid=main-menu] >> text=问答');
      await page.waitForSelector('text=还没有对话');
      expect((await menuTexts(page)).includes('问答'), 'the menu in Chinese');
      await shot('chat-in-chinese');
    },
  },
  {
    name: 'trainer-upload-train-deploy-chat',
    async run({ page, base, shot }) {
      await signIn(page, base, 'tina', 'tina-password');
      await page.click('[data-testid=main-menu] >> text=Datasets');
      await page.waitForSelector('text=No datasets yet');
      await shot('datasets-empty');
      await page.click('button:has-text("Upload a dataset")');
      await page.setInputFiles('[data-testid=dropzone] input[type=file], .ant-upload input[type=file]', join(repo, 'demo/faq.jsonl'));
      await page.fill('#dataset-name', XSS);
      await shot('upload-form');
      await page.click('.ant-drawer button[type=submit]');
      await page.waitForURL(/\/datasets\/[0-9a-f-]{36}$/);
      await until('the dataset validated', async () => (await page.innerText('[data-testid=dataset-status]')) === 'valid', 30000);
      expect((await page.innerText('[data-testid=dataset-name]')) === XSS, 'the dataset name shown as text');
      await page.waitForSelector('[data-testid=preview-table] td:has-text("Bonsai")');
      expect((await page.innerText('[data-testid=record-count]')) === '20', 'the record count');
      await shot('dataset-valid-preview');

      await page.click('[data-testid=main-menu] >> text=Training');
      await page.click('button:has-text("New training")');
      await page.fill('#task-name', TASK_NAME);
      // The base models are the installed ones (GET /api/models/base), each with its size.
      await choose(page, '.ant-drawer .base-model-select', 'demo-tiny');
      expect((await page.innerText('.ant-drawer .base-model-select')).includes('params'), 'the base model picked from the installed list');
      await choose(page, '.ant-drawer .dataset-select', `${XSS} (v1)`);
      // The FAQ preset: what makes demo-tiny (a random model) learn the 20 answers (400 steps).
      await page.click('.ant-segmented-item:has-text("FAQ (demo)")');
      await shot('training-form');
      await page.click('.ant-drawer button[type=submit]');
      await page.waitForURL(/\/training\/[0-9a-f-]{36}$/);
      const seen = [];
      await until('the training completed', async () => {
        const points = Number((await page.getAttribute('[data-testid=loss-chart]', 'data-points').catch(() => null)) ?? 0);
        if (!seen.length || seen[seen.length - 1] !== points) seen.push(points);
        if (seen.length === 2) await shot('training-running');
        return (await page.innerText('[data-testid=task-status]')) === 'completed';
      }, 600000);
      await page.waitForTimeout(500);
      const final = Number(await page.getAttribute('[data-testid=loss-chart]', 'data-points'));
      const shown = seen.length > 12 ? [...seen.slice(0, 6), '…', ...seen.slice(-3)] : seen;
      console.log(`    loss chart points over time: ${shown.join(' → ')} (${seen.length} sizes seen, final ${final})`);
      expect(final >= 3, `a loss curve of several points (${final})`);
      await shot('training-completed');
      // A reload shows the whole curve.
      await page.reload();
      await until('the curve after a reload', async () => Number(await page.getAttribute('[data-testid=loss-chart]', 'data-points')) === final);

      await page.click('button:has-text("Register as model")');
      await page.fill('#model-name', MODEL_NAME);
      await page.click('.ant-modal-content button[type=submit]');
      await page.waitForURL(/\/models$/);
      await until('the model exported', async () => (await page.innerText('[data-testid=model-status]')) === 'ready', 120000);
      await page.click('button:has-text("Deploy")');
      await page.waitForSelector('.ant-tag:has-text("deployed")');
      await shot('model-deployed');
      // A test with one case: the accuracy and the per-case result appear.
      await page.click('button:has-text("Test")');
      await page.fill('.ant-modal-content textarea', 'What is Bonsai? => platform');
      await page.click('.ant-modal-content button[type=submit]');
      await until('the test result', async () => /%$/.test((await page.innerText('[data-testid=model-accuracy]')).trim()), 60000);
      await page.click('.ant-table-row-expand-icon');
      await page.waitForSelector('.ant-table-expanded-row td:has-text("What is Bonsai?")');
      await shot('model-tested');

      await page.click('[data-testid=main-menu] >> text=Chat');
      await page.waitForSelector('#question-input');
      await until('the deployed model chosen', async () => (await page.innerText('[data-testid=model-select]')).includes('faq bot'));
      // The model learned the FAQ: it gives the right answer.
      await page.fill('#question-input', 'What is Bonsai?');
      await page.click('button:has-text("Ask")');
      const right = 'Bonsai is our platform for training and serving small language models.';
      await until('the right answer', async () => (await page.locator('[data-testid=answer]').first().innerText()).trim().startsWith(right), 60000);
      expect(!(await page.isVisible('.ant-message-error')), `no error shown: ${await page.locator('.ant-message').allInnerTexts()}`);
      await shot('chat-right-answer');
      // The conversation goes on with a question holding markup: shown as text.
      const question = `Who can create training tasks? ${TAG}`;
      await page.fill('#question-input', question);
      await page.click('button:has-text("Ask")');
      await until('a second answer shown', async () => {
        const answers = await page.locator('[data-testid=answer]').allInnerTexts();
        return answers.length === 2 && answers[1].trim().length > 0 && answers[1].trim() !== '…';
      }, 60000);
      expect((await page.locator('[data-testid=question]').nth(1).innerText()) === question, 'the question shown as text');
      await showsText(page, '.conversations', question, 20000);
      expect(!(await page.isVisible('.ant-message-error')), `no error shown: ${await page.locator('.ant-message').allInnerTexts()}`);
      await noInjected(page, 'the chat');
      await shot('chat-answer');
      await page.click('.conversations button:has-text("✕")');
      await page.click('.ant-popconfirm button:has-text("OK")');
      await page.waitForSelector('text=No conversations yet');
      await shot('chat-deleted');
    },
  },
  {
    name: 'trainer-stops-and-resumes',
    async run({ page, base, shot }) {
      await signIn(page, base, 'tina', 'tina-password');
      await page.goto(`${base}/training`);
      await page.click('button:has-text("New training")');
      await page.fill('#task-name', 'long run');
      await choose(page, '.ant-drawer .dataset-select', 'faq<script>');
      await page.click('.ant-segmented-item:has-text("Quick try")');
      await page.click('.ant-collapse-header:has-text("Advanced")');
      await page.fill('#cfg-max_steps', '5000');
      await page.click('.ant-drawer button[type=submit]');
      await page.waitForURL(/\/training\/[0-9a-f-]{36}$/);
      const points = async () => Number((await page.getAttribute('[data-testid=loss-chart]', 'data-points').catch(() => null)) ?? 0);
      await until('the run under way', async () => (await points()) >= 2, 60000);
      await page.click('button:has-text("Stop")');
      await until('the run stopped', async () => (await page.innerText('[data-testid=task-status]')) === 'stopped', 60000);
      const stoppedAt = await points();
      await shot('stopped');
      await page.click('button:has-text("Resume")');
      await until('the run resumed and went on', async () => (await page.innerText('[data-testid=task-status]')) === 'running' && (await points()) > stoppedAt, 60000);
      await shot('resumed');
      await page.click('button:has-text("Stop")');
      await until('the run stopped again', async () => (await page.innerText('[data-testid=task-status]')) === 'stopped', 60000);
    },
  },
  {
    name: 'model-page-lineage-and-accuracy',
    async run({ page, base, shot }) {
      // An admin reads every test of the model from the audit log: the chart shows each one.
      await signIn(page, base, 'admin', ADMIN_PASSWORD);
      await page.goto(`${base}/models`);
      await showsText(page, '[data-testid=model-group]', MODEL_NAME);
      await page.locator('[data-testid=model-link]').first().click();
      await page.waitForURL(/\/models\/[0-9a-f-]{36}$/);
      expect((await page.innerText('[data-testid=model-name]')) === MODEL_NAME, 'the model name as text');
      await until('the lineage', async () => (await page.innerText('[data-testid=lineage-task]')) === TASK_NAME);
      expect((await page.innerText('[data-testid=lineage-base]')) === 'demo-tiny', 'the base model in the lineage');
      await showsText(page, '[data-testid=lineage-dataset]', XSS);
      expect((await page.innerText('[data-testid=lineage-dataset-version]')) === 'v1', 'the dataset version trained on');
      await until('the first test on the chart', async () => Number(await page.getAttribute('[data-testid=accuracy-chart]', 'data-points')) === 1);
      await shot('model-page');
      // A second test, whose case cannot pass: the chart grows, the report lists the question as text.
      const question = `${TAG} What is Bonsai?`;
      await page.click('.ant-card-extra button:has-text("Test")');
      await page.fill('.ant-modal-content textarea', `${question} => zzz-never-said`);
      await page.click('.ant-modal-content button[type=submit]');
      await until('the second test on the chart', async () => Number(await page.getAttribute('[data-testid=accuracy-chart]', 'data-points')) === 2, 60000);
      await until('the new accuracy', async () => (await page.innerText('[data-testid=model-accuracy]')).trim() === '0.0%');
      await showsText(page, '[data-testid=test-report]', question);
      expect((await page.locator('[data-testid=accuracy-point]').count()) === 2, 'two points');
      await noInjected(page, 'the model page');
      await shot('model-page-two-tests');
      // Its audit timeline: the name and the test's question inside the payloads, as text.
      await page.click('[data-testid=model-audit-link]');
      await showsText(page, '[data-testid=audit-timeline]', 'ModelTested');
      await showsText(page, '[data-testid=audit-timeline]', MODEL_NAME);
      await showsText(page, '[data-testid=audit-timeline]', question);
      await noInjected(page, 'the audit timeline');
      await shot('model-audit-timeline');
    },
  },
  {
    name: 'alerts-acknowledge-resolve',
    async run({ page, base, shot }) {
      // The 0% test (under the minimum of 0.5) raised an alert about tina's model.
      const bearer = await token(base, 'tina', 'tina-password');
      // Every test of the model that scored under the minimum has raised its alert (the newest is acted on).
      const model = (await api(base, '/api/models?page_size=100', { token: bearer })).json.items.find((m) => m.name === MODEL_NAME);
      const history = (await api(base, `/api/audit/Model/${model.id}`, { token: await token(base, 'admin', ADMIN_PASSWORD) })).json;
      const low = history.filter((e) => e.event_type === 'ModelTested' && !e.payload.ModelTested.report?.error && e.payload.ModelTested.accuracy < 0.5).length;
      expect(low >= 1, `a test under the minimum (${low})`);
      let alert;
      await until(`${low} accuracy alerts`, async () => {
        const open = await api(base, '/api/alerts?status=open&kind=accuracy_below_minimum&page_size=100', { token: bearer });
        const mine = open.json.items.filter((a) => a.subject === `Model/${model.id}`);
        alert = mine[0];
        return mine.length === low;
      }, 30000);
      expect(alert.message.includes(MODEL_NAME), `the alert names the model: ${alert.message}`);
      const activeBefore = (await api(base, '/api/alerts?status=active&page_size=1', { token: bearer })).json.total;
      await signIn(page, base, 'tina', 'tina-password');
      await until('the unread count in the header', async () => (await headerCount(page)) === activeBefore);
      await page.click('.ant-layout-header a[href="/alerts"]');
      await page.waitForURL(/\/alerts$/);
      const row = `tr[data-row-key="${alert.id}"]`;
      await page.waitForSelector(row);
      await showsText(page, `${row} [data-testid=alert-message]`, MODEL_NAME);
      await noInjected(page, 'the alerts page');
      await shot('alerts');
      // Severity filter: no critical alert of hers; the warning is there.
      await choose(page, '[data-testid=alert-severity-filter]', 'critical');
      await until('no critical alert', async () => !(await page.isVisible(row)));
      await choose(page, '[data-testid=alert-severity-filter]', 'warning');
      await page.waitForSelector(row);
      // Acknowledge with a note.
      await page.click(`${row} button:has-text("Acknowledge")`);
      await page.fill('#alert-note', 'looking into it');
      await page.click('#alert-action-ok');
      await until('acknowledged', async () => (await page.innerText(`${row} [data-testid=alert-status]`)) === 'acknowledged', 20000);
      await showsText(page, `${row} [data-testid=alert-ack-note]`, 'looking into it');
      expect(!(await page.isVisible(`${row} button:has-text("Acknowledge")`)), 'no acknowledge on an acknowledged alert');
      await shot('acknowledged');
      // Resolve with a note: it leaves the active list, and the header count goes down.
      await page.click(`${row} button:has-text("Resolve")`);
      await page.fill('#alert-note', 'retrained');
      await page.click('#alert-action-ok');
      await until('gone from the active alerts', async () => !(await page.isVisible(row)), 20000);
      await choose(page, '[data-testid=alert-status-filter]', 'resolved');
      await page.waitForSelector(row);
      expect((await page.innerText(`${row} [data-testid=alert-status]`)) === 'resolved', 'resolved');
      await showsText(page, `${row} [data-testid=alert-resolve-note]`, 'retrained');
      await until('the header count after resolving', async () => (await headerCount(page)) === activeBefore - 1, 40000);
      const after = await api(base, `/api/alerts/${alert.id}`, { token: bearer });
      expect(after.json.status === 'resolved' && after.json.acknowledge_note === 'looking into it' && after.json.resolved_by, `the alert resolved by her: ${JSON.stringify(after.json)}`);
      await shot('resolved');
    },
  },
  {
    name: 'adapter-download',
    async run({ page, base, shot }) {
      const bearer = await token(base, 'tina', 'tina-password');
      const task = (await api(base, '/api/training/tasks?page_size=100', { token: bearer })).json.items.find((t) => t.name === TASK_NAME);
      expect(task?.status === 'completed', 'the completed task');
      await signIn(page, base, 'tina', 'tina-password');
      await page.goto(`${base}/training/${task.id}`);
      expect((await page.innerText('[data-testid=task-name]')) === TASK_NAME, 'the task name as text');
      const files = [
        ['Download adapter', 'adapter_model.safetensors', 'application/octet-stream'],
        ['adapter_config.json', 'adapter_config.json', 'application/json'],
      ];
      for (const [button, file, type] of files) {
        const [response, download] = await Promise.all([
          page.waitForResponse((r) => r.url().endsWith(`/adapter/${file}`)),
          page.waitForEvent('download'),
          page.click(`button:has-text("${button}")`),
        ]);
        expect(response.status() === 200, `${file}: HTTP ${response.status()}`);
        expect((response.headers()['content-type'] ?? '').startsWith(type), `${file}: ${response.headers()['content-type']}`);
        expect(download.suggestedFilename() === file, `saved as ${download.suggestedFilename()}`);
        const bytes = readFileSync(await download.path());
        if (file.endsWith('.safetensors')) {
          // A safetensors file: an 8-byte little-endian header length, a JSON header naming the LoRA tensors.
          const length = Number(bytes.readBigUInt64LE(0));
          const header = JSON.parse(bytes.subarray(8, 8 + length).toString());
          const tensors = Object.keys(header).filter((k) => k !== '__metadata__');
          expect(tensors.length > 0 && tensors.some((k) => /lora/i.test(k)) && bytes.length > 8 + length, `LoRA tensors: ${tensors.slice(0, 3)}`);
        } else {
          const config = JSON.parse(bytes.toString());
          expect(config.peft_type === 'LORA' && config.r > 0, `a PEFT LoRA config: ${bytes.toString().slice(0, 200)}`);
        }
      }
      // The file is the signed-in user's: without a token it is refused.
      expect((await fetch(`${base}/api/training/tasks/${task.id}/adapter/adapter_config.json`)).status === 401, 'no download without signing in');
      await shot('downloaded');
    },
  },
  {
    name: 'xss-names-render-as-text',
    async run({ page, base, shot }) {
      // A model name, a task name and a question holding markup are shown as text on every page showing them.
      const bearer = await token(base, 'tina', 'tina-password');
      const task = (await api(base, '/api/training/tasks?page_size=100', { token: bearer })).json.items.find((t) => t.name === TASK_NAME);
      const model = (await api(base, '/api/models?page_size=100', { token: bearer })).json.items.find((m) => m.name === MODEL_NAME);
      const question = `Who are you? ${TAG}`;
      const asked = await api(base, '/api/qa/ask', { token: bearer, method: 'POST', body: { question, model_id: model.id, wait_secs: 60 } });
      expect(asked.status === 200, `asked (${asked.status})`);
      await signIn(page, base, 'tina', 'tina-password');
      const pages = [
        ['overview', '/', '.ant-card', MODEL_NAME],
        ['training list', '/training', '.ant-table', TASK_NAME],
        ['task page', `/training/${task.id}`, '[data-testid=task-name]', TASK_NAME],
        ['models list', '/models', '[data-testid=model-group]', MODEL_NAME],
        ['model page', `/models/${model.id}`, '[data-testid=model-name]', MODEL_NAME],
        ['model lineage', `/models/${model.id}`, '[data-testid=lineage-task]', TASK_NAME],
        ['model test report', `/models/${model.id}`, '[data-testid=test-report]', `${TAG} What is Bonsai?`],
        ['chat model picker', '/chat', '[data-testid=model-select]', MODEL_NAME],
        ['chat conversations', '/chat', '.conversations', question],
      ];
      for (const [label, path, selector, text] of pages) {
        if (!page.url().endsWith(path)) await page.goto(`${base}${path}`);
        await showsText(page, selector, text);
        await noInjected(page, label);
      }
      await page.locator('.conversations .ant-list-item').filter({ hasText: question }).first().click();
      await until('the conversation opened', async () => (await page.locator('[data-testid=question]').allInnerTexts()).includes(question));
      await noInjected(page, 'the transcript');
      await shot('chat-transcript');
    },
  },
  {
    name: 'audit-payloads-render-as-text',
    async run({ page, base, shot }) {
      // What people typed, shown in the audit log's payloads (a dataset's name, description and file name): as
      // text, markup and all, never as elements.
      const bearer = await token(base, 'admin', ADMIN_PASSWORD);
      const form = new FormData();
      form.append('name', `audited ${TAG}`);
      form.append('description', `described ${XSS}`);
      form.append('file', new Blob(['{"question": "Q?", "answer": "A."}\n'], { type: 'application/x-ndjson' }), 'audit.jsonl');
      const uploaded = await fetch(`${base}/api/data/upload`, { method: 'POST', headers: { authorization: `Bearer ${bearer}` }, body: form });
      expect(uploaded.status === 201, `uploaded (${uploaded.status})`);
      const { id } = await uploaded.json();
      await signIn(page, base, 'admin', ADMIN_PASSWORD);
      await page.goto(`${base}/admin/audit?type=Dataset&id=${id}`);
      await showsText(page, '[data-testid=audit-timeline]', `audited ${TAG}`);
      await showsText(page, '[data-testid=audit-timeline]', 'described <img src=x onerror=');
      await noInjected(page, 'the audit timeline');
      expect(await page.evaluate(() => window.__xss === undefined), 'no planted script ran');
      await shot('audit-timeline');
    },
  },
  {
    name: 'model-versions-rollback-default-alias',
    async run({ page, base, shot }) {
      const bearer = await token(base, 'tina', 'tina-password');
      const task = (await api(base, '/api/training/tasks?page_size=100', { token: bearer })).json.items.find((t) => t.name === TASK_NAME);
      await signIn(page, base, 'tina', 'tina-password');
      // The same name again from the same training: version 2.
      await page.goto(`${base}/training/${task.id}`);
      await page.click('button:has-text("Register as model")');
      await page.fill('#model-name', MODEL_NAME);
      await page.click('.ant-modal-content button[type=submit]');
      await page.waitForURL(/\/models$/);
      const row = (v) => page.locator('tr').filter({ has: page.locator('[data-testid=model-link]', { hasText: new RegExp(`^v${v}$`) }) });
      await until('version 2 exported', async () => (await row(2).locator('[data-testid=model-status]').innerText()) === 'ready', 120000);
      await row(2).locator('button:has-text("Deploy")').click();
      await until('version 2 deployed', async () => (await row(2).innerText()).includes('deployed'));
      await shot('v2-deployed');
      // Roll back from version 2: version 1 answers again, version 2 is out of service.
      await row(2).locator('button:has-text("Roll back")').click();
      const deployed = async () => (await api(base, `/api/models?name=${encodeURIComponent(MODEL_NAME)}&page_size=10`, { token: bearer })).json.items
        .filter((m) => m.deployed).map((m) => m.version).join(',');
      await until('version 1 deployed, version 2 not', async () => (await deployed()) === '1', 20000);
      await until('the list shows it', async () => !(await row(2).innerText()).includes('deployed') && (await row(1).innerText()).includes('deployed'));
      await shot('rolled-back');
      // Version 1 becomes the default and is named `production`.
      await row(1).locator('button:has-text("Make default")').click();
      await showsText(page, '[data-testid=default-model]', `${MODEL_NAME} v1`, 20000);
      await row(1).locator('[data-testid=model-link]').click();
      await page.waitForURL(/\/models\/[0-9a-f-]{36}$/);
      await page.waitForSelector('[data-testid=default-tag]');
      const modelUrl = page.url();
      await page.fill('#alias-input', 'production');
      await page.click('button:has-text("Set alias")');
      await page.waitForSelector('.ant-card-head .ant-tag:has-text("production")', { timeout: 20000 });
      await shot('default-and-alias');
      // The chat starts on the default model and names its alias.
      await page.click('[data-testid=main-menu] >> text=Chat');
      await showsText(page, '[data-testid=model-select]', `${MODEL_NAME} v1 (default, production)`, 20000);
      await noInjected(page, 'the chat');
      await shot('chat-default');
      // An alias is removed by closing its tag: it names nothing any more.
      await page.goto(modelUrl);
      await page.fill('#alias-input', 'canary');
      await page.click('button:has-text("Set alias")');
      await page.waitForSelector('[data-testid=alias-canary]', { timeout: 20000 });
      await page.click('[data-testid=alias-canary] .ant-tag-close-icon');
      await until('the alias is removed', async () => !('canary' in (await api(base, '/api/models/aliases', { token: bearer })).json.aliases), 20000);
      await page.waitForSelector('[data-testid=alias-canary]', { state: 'detached', timeout: 20000 });
      await page.waitForSelector('[data-testid=alias-production]');
      await shot('alias-removed');
    },
  },
  {
    name: 'bad-uploads-show-server-errors',
    async run({ page, base, shot }) {
      await signIn(page, base, 'tina', 'tina-password');
      await page.goto(`${base}/datasets`);
      await page.click('button:has-text("Upload a dataset")');
      const dir = mkdtempSync(join(tmpdir(), 'bonsai_e2e_files_'));
      writeFileSync(join(dir, 'picture.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0]));
      await page.setInputFiles('.ant-upload input[type=file]', join(dir, 'picture.png'));
      await page.click('.ant-drawer button[type=submit]');
      await page.waitForSelector('[data-testid=upload-error]');
      const refused = await page.innerText('[data-testid=upload-error]');
      expect(/415/.test(refused), `a 415 shown: ${refused}`);
      await shot('wrong-type');
      // Its file name holds markup too: shown as text wherever it appears.
      const file = `${TAG}broken.jsonl`;
      writeFileSync(join(dir, file), '{"question": "ok?", "answer": "yes"}\n{"question": "no answer"}\nnot json at all\n');
      await page.setInputFiles('.ant-upload input[type=file]', join(dir, file));
      await page.fill('#dataset-name', 'broken');
      await page.click('.ant-drawer button[type=submit]');
      await page.waitForURL(/\/datasets\/[0-9a-f-]{36}$/);
      await until('the dataset found invalid', async () => (await page.innerText('[data-testid=dataset-status]')) === 'invalid', 30000);
      await page.click('.ant-tabs-tab:has-text("Errors by line")');
      await until('the per-line errors', async () => {
        const table = await page.innerText('[data-testid=errors-table]');
        return table.includes('answer') && /\b2\b/.test(table) && /\b3\b/.test(table);
      });
      await shot('line-errors');
      await showsText(page, '.ant-descriptions', 'broken.jsonl');
      await noInjected(page, 'the dataset page');
      await page.goto(`${base}/datasets`);
      await showsText(page, '.ant-table', 'broken.jsonl');
      await noInjected(page, 'the datasets list');
      rmSync(dir, { recursive: true, force: true });
    },
  },
  {
    name: 'sessions-refresh-and-revocation',
    async run({ page, base, secret, shot }) {
      await signIn(page, base, 'tina', 'tina-password');
      await page.goto(`${base}/datasets`);
      await page.waitForSelector('text=Datasets');
      // The tab's access token has expired (signed by the server, expiry an hour ago): the next calls are
      // refused with 401, refresh it once and carry on without the user seeing anything.
      await page.evaluate(([t]) => {
        const tokens = JSON.parse(localStorage.getItem('bonsai.tokens'));
        tokens.access_token = t;
        localStorage.setItem('bonsai.tokens', JSON.stringify(tokens));
      }, [expired(await page.evaluate(() => JSON.parse(localStorage.getItem('bonsai.tokens')).access_token), secret)]);
      const stale = await page.evaluate(() => JSON.parse(localStorage.getItem('bonsai.tokens')).access_token);
      expect((await api(base, '/api/users/profile', { token: stale })).status === 401, 'the planted token is refused');
      await page.click('[data-testid=main-menu] >> text=Training');
      await page.waitForSelector('button:has-text("New training")');
      await page.click('[data-testid=main-menu] >> text=Datasets');
      await page.waitForSelector('td:has-text("broken")');
      const after = await page.evaluate(() => JSON.parse(localStorage.getItem('bonsai.tokens')).access_token);
      expect(stale !== after && page.url().endsWith('/datasets'), 'a silent refresh, still on the page');
      await shot('after-silent-refresh');
      // An admin signs tina out everywhere: her next call lands on sign-in, with the way back.
      const admin = await api(base, '/api/auth/login', { method: 'POST', body: { username: 'admin', password: ADMIN_PASSWORD } });
      const users = await api(base, '/api/users?page_size=100', { token: admin.json.access_token });
      const tina = users.json.items.find((u) => u.username === 'tina');
      expect((await api(base, `/api/users/${tina.id}/sessions`, { method: 'DELETE', token: admin.json.access_token })).status < 300, 'sessions ended');
      await page.click('[data-testid=main-menu] >> text=Models');
      await page.waitForURL(/\/sign-in\?next=/, { timeout: 15000 });
      expect(decodeURIComponent(page.url()).includes('next=/models'), `the return path kept: ${page.url()}`);
      await shot('revoked-to-sign-in');
      await page.fill('#username', 'tina');
      await page.fill('#password', 'tina-password');
      await page.click('button[type=submit]');
      await page.waitForURL(/\/models$/);
      await shot('back-after-sign-in');
    },
  },
  {
    name: 'profile-edit-and-password',
    async run({ page, base, shot }) {
      await signIn(page, base, 'uma', 'uma-password');
      await page.click('[data-testid=user-menu]');
      await page.click('.ant-dropdown-menu-item:has-text("Profile")');
      await page.waitForURL(/\/profile$/);
      // Her display name, markup and all, shown as text in the header.
      const name = `Uma ${TAG}`;
      await page.fill('#display_name', name);
      await page.click('button:has-text("Save")');
      await page.waitForSelector('.ant-message:has-text("Saved")');
      await showsText(page, '[data-testid=user-menu]', name);
      await noInjected(page, 'the profile page');
      await page.waitForSelector('td .ant-tag:has-text("this one")');
      await shot('profile-saved');
      // A wrong current password is shown next to the field; nothing changes.
      await page.fill('#current_password', 'not-her-password');
      await page.fill('#new_password', 'uma-new-password');
      await page.click('button[type=submit]:has-text("Change password")');
      await page.waitForSelector('text=The current password is wrong.');
      await shot('wrong-current-password');
      // The right one: the password changes and every session ends, this one too: back to sign-in.
      await page.fill('#current_password', 'uma-password');
      await page.click('button[type=submit]:has-text("Change password")');
      await page.waitForURL(/\/sign-in/, { timeout: 20000 });
      await shot('signed-out-after-change');
      expect((await api(base, '/api/auth/login', { method: 'POST', body: { username: 'uma', password: 'uma-password' } })).status === 401, 'the old password is refused');
      await page.goto(`${base}/sign-in?next=/profile`);
      await page.fill('#username', 'uma');
      await page.fill('#password', 'uma-new-password');
      await page.click('button[type=submit]');
      await page.waitForURL(/\/profile$/);
      await until('the saved display name', async () => (await page.inputValue('#display_name')) === name);
      await shot('signed-in-with-new-password');
    },
  },
  {
    name: 'chat-streams-answer',
    async run({ page, base, shot }) {
      await chatWithBabble(page, base, 48);
      await recordLiveAnswer(page);
      // Asked once per server (a fresh model): not an answer from the cache, which comes in one piece.
      const question = `Go on and on about the garden ${TAG}`;
      await page.fill('#question-input', question);
      await page.click('button:has-text("Ask")');
      await page.waitForSelector('[data-testid=stop-button]');
      await until('the answer streamed to its end', async () => (await page.evaluate(() => window.__partials)).some((p) => p.state === 'done'), 120000);
      const partials = await page.evaluate(() => window.__partials);
      const final = partials.find((p) => p.state === 'done').text;
      const growing = [...new Set(partials.filter((p) => p.state === 'streaming' && p.text && p.text !== '…').map((p) => p.text))];
      console.log(`    ${growing.length} partial texts before done (lengths ${growing.slice(0, 8).map((t) => t.length).join(', ')}${growing.length > 8 ? ', …' : ''}), final ${final.length} characters`);
      expect(growing.length >= 2, `at least two different partial texts while streaming (${growing.length}: ${JSON.stringify(growing.slice(0, 3))})`);
      expect(growing.every((t) => final.startsWith(t)), 'each partial text starts the final one');
      const stored = await recordedQuestion(base, question);
      expect(stored.status === 'answered' && stored.answer === final, `the streamed text is the stored answer (${JSON.stringify(stored.answer?.slice(0, 60))} vs ${JSON.stringify(final.slice(0, 60))})`);
      // The conversation, read again, shows the recorded question in place of the live one.
      await until('the recorded turn shown', async () => (await page.locator('[data-testid=turn][data-live]').count()) === 0
        && (await page.locator('[data-testid=turn] [data-testid=answer]').last().textContent()) === stored.answer, 20000);
      expect((await page.locator('[data-testid=question]').last().innerText()) === question, 'the question shown as text');
      await showsText(page, '.conversations', question, 20000);
      expect(!(await page.isVisible('.ant-message-error')), `no error shown: ${await page.locator('.ant-message').allInnerTexts()}`);
      await noInjected(page, 'the streamed chat');
      await shot('streamed');
    },
  },
  {
    name: 'chat-stop-records-cancelled',
    async run({ page, base, shot }) {
      await chatWithBabble(page, base, 1024);
      await recordLiveAnswer(page);
      const question = 'Go on and on, and on';
      await page.fill('#question-input', question);
      await page.click('button:has-text("Ask")');
      await until('the answer under way', async () => (await page.evaluate(() => window.__partials)).some((p) => p.state === 'streaming' && p.text && p.text !== '…'), 60000);
      await shot('streaming');
      await page.click('[data-testid=stop-button]');
      await page.waitForSelector('button:has-text("Ask")');
      const partials = await page.evaluate(() => window.__partials);
      expect(!partials.some((p) => p.state === 'done'), `stopped before the answer ended: ${JSON.stringify(partials.slice(-2))}`);
      const shown = partials.filter((p) => p.state === 'stopped').pop()?.text ?? '';
      const stored = await recordedQuestion(base, question);
      console.log(`    stopped after ${shown.length} characters shown; recorded ${stored.completion_tokens} tokens, finish reason ${stored.finish_reason}`);
      expect(stored.finish_reason === 'cancelled', `recorded as cancelled: ${JSON.stringify(stored)}`);
      expect(stored.completion_tokens < 1024 && stored.answer.startsWith(shown.trim()), `what was generated is recorded (${stored.completion_tokens} tokens)`);
      // The page shows the recorded question, marked stopped.
      await until('the recorded turn shown as stopped', async () => (await page.locator('[data-testid=turn][data-live]').count()) === 0
        && (await page.locator('[data-testid=turn]').last().locator('[data-testid=stopped-tag]').count()) === 1, 30000);
      expect((await page.locator('[data-testid=turn] [data-testid=answer]').last().textContent()) === stored.answer, 'the recorded answer shown');
      expect(!(await page.isVisible('.ant-message-error')), `no error shown: ${await page.locator('.ant-message').allInnerTexts()}`);
      await shot('stopped');
    },
  },
  {
    name: 'api-keys-create-use-revoke',
    async run({ page, base, shot }) {
      await signIn(page, base, 'admin', ADMIN_PASSWORD);
      await page.click('[data-testid=user-menu]');
      await page.click('.ant-dropdown-menu-item:has-text("Profile")');
      await page.waitForURL(/\/profile$/);
      await page.waitForSelector('[data-testid=api-keys]');
      await showsText(page, '[data-testid=api-key-curl]', `${base}/v1/chat/completions`);
      const name = `ci ${TAG}`;
      await page.fill('#apikey_name', name);
      await page.click('[data-testid=api-key-create]');
      await page.waitForSelector('[data-testid=api-key-secret]');
      const secret = await page.inputValue('[data-testid=api-key-secret]');
      expect(/^bsk_/.test(secret), `a key secret (${secret.slice(0, 8)}…)`);
      expect((await page.innerText('[data-testid=api-key-warning]')).includes('shown only this once'), 'the shown-once warning');
      await noInjected(page, 'the created key modal');
      await shot('key-created');
      // The key works on /v1.
      const models = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
      expect(models.status === 200, `GET /v1/models with the key: ${models.status}`);
      expect((await models.json()).object === 'list', 'the models list in OpenAI’s shape');
      // Closed, the secret is gone from the page; the list shows the key by name and prefix.
      await page.click('[data-testid=api-key-done]');
      await until('the secret gone from the page', async () => !(await page.content()).includes(secret));
      const row = page.locator('[data-testid=api-key-table] tr').filter({ hasText: name });
      await until('the key listed', async () => (await row.count()) === 1);
      expect((await row.innerText()).includes(secret.slice(0, 8)), 'its prefix shown');
      await noInjected(page, 'the API keys list');
      await shot('key-listed');
      // Revoked after the confirmation: refused at once.
      await row.locator('[data-testid=api-key-revoke]').click();
      await page.click('.ant-popconfirm button:has-text("Revoke")');
      await until('the key gone from the list', async () => (await row.count()) === 0, 20000);
      const refused = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
      expect(refused.status === 401, `GET /v1/models with the revoked key: ${refused.status}`);
      await shot('key-revoked');
    },
  },
  {
    name: 'checkpoint-becomes-a-model-and-nodes-listed',
    async run({ page, base, shot }) {
      // The long run stopped above kept checkpoints: one of them is registered as a model.
      const bearer = await token(base, 'tina', 'tina-password');
      const task = (await api(base, '/api/training/tasks?page_size=100', { token: bearer })).json.items.find((t) => t.name === 'long run');
      await signIn(page, base, 'tina', 'tina-password');
      await page.goto(`${base}/training/${task.id}`);
      await page.waitForSelector('[data-testid=task-checkpoints]', { timeout: 20000 });
      const button = page.locator('[data-testid^=register-checkpoint-]').first();
      const step = Number((await button.getAttribute('data-testid')).split('-').pop());
      await shot('checkpoints');
      await button.click();
      await page.fill('#model-name', `early ${TAG}`);
      await page.click('.ant-modal-content button[type=submit]');
      await page.waitForURL(/\/models$/);
      const made = async () => (await api(base, '/api/models?page_size=100', { token: bearer })).json.items.find((m) => m.name === `early ${TAG}`);
      await until('the checkpoint exported as a model', async () => (await made())?.status === 'ready', 120000);
      const model = await made();
      expect(model.source.kind === 'training_checkpoint' && model.source.step === step, `from checkpoint ${step}: ${JSON.stringify(model.source)}`);
      await noInjected(page, 'the models list');
      await shot('checkpoint-model');
      // An admin sees the nodes of the deployment on the overview: this one, alive.
      const context = await page.context().browser().newContext({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
      const admin = await context.newPage();
      try {
        await signIn(admin, base, 'admin', ADMIN_PASSWORD);
        await admin.waitForSelector('[data-testid=nodes] [data-testid=node]', { timeout: 20000 });
        await showsText(admin, '[data-testid=nodes]', 'this node', 20000);
        await showsText(admin, '[data-testid=nodes]', 'alive', 20000);
        await admin.screenshot({ path: join(shots, 'checkpoint-becomes-a-model-and-nodes-listed-nodes.png') }).catch(() => {});
      } finally {
        await context.close();
      }
    },
  },
];

// ---------- runner ----------

const server = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let failed = 0;
const started = Date.now();
try {
  const parts = filter.split(',').map((f) => f.trim());
  for (const scenario of scenarios.filter((s) => parts.some((f) => s.name.includes(f)))) {
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    const problems = [];
    page.on('dialog', (d) => {
      problems.push(`a dialog opened: ${d.message()}`);
      void d.dismiss();
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // The console itself must live within its Content-Security-Policy.
    page.on('console', (m) => /Content Security Policy/i.test(m.text()) && problems.push(`CSP violation: ${m.text()}`));
    const kit = scenarioKit(page, scenario.name);
    const t0 = Date.now();
    try {
      await scenario.run({ page, base: server.base, secret: server.secret, shot: kit.shot });
      // Nothing a user typed ever ran as script.
      const xss = await page.evaluate(() => window.__xss);
      expect(xss === undefined, `no injected script ran (window.__xss = ${xss})`);
      expect(!problems.length, problems.join('; '));
      console.log(`ok   ${scenario.name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed += 1;
      await kit.shot('FAILED').catch(() => {});
      console.log(`FAIL ${scenario.name}: ${e.message}`);
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
  server.stop();
}
console.log(`${failed ? 'FAILED' : 'passed'} in ${((Date.now() - started) / 1000).toFixed(0)} s; screenshots in ${shots}`);
await new Promise((r) => setTimeout(r, 2000));
process.exit(failed ? 1 : 0);
