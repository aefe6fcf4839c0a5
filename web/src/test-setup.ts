// Test setup: DOM matchers for Testing Library.
import '@testing-library/jest-dom/vitest';

// jsdom lacks matchMedia, which Ant Design's responsive helpers call.
if (!window.matchMedia) {
  window.matchMedia = (query: string) =>
    ({ matches: false, media: query, onchange: null, addListener: () => {}, removeListener: () => {}, addEventListener: () => {}, removeEventListener: () => {}, dispatchEvent: () => false }) as MediaQueryList;
}
