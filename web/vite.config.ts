// Vite builds the console into dist/ (served by `bonsai serve` at `/`); in development it proxies the API to
// a running `bonsai serve` (BONSAI_URL, default http://127.0.0.1:8080). Vitest runs the unit tests in jsdom.
/// <reference types="vitest" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const api = process.env.BONSAI_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  build: {
    // No inline module-preload polyfill script: the Content-Security-Policy forbids inline scripts.
    modulePreload: { polyfill: false },
    // The bundle-size test reads which chunks each route loads from here.
    manifest: true,
    chunkSizeWarningLimit: 1200,
  },
  server: { proxy: { '/api': { target: api, ws: true } } },
  test: {
    environment: 'jsdom',
    globals: true,
    setupFiles: ['./src/test-setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
