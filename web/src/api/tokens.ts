// Where the signed-in session's tokens live (localStorage, so a reload keeps the session), and who is told
// when they change. Access tokens last minutes; the refresh token rotates on every use.
export interface Tokens {
  access_token: string;
  refresh_token: string;
}

const KEY = 'bonsai.tokens';
type Listener = (tokens: Tokens | null) => void;
const listeners = new Set<Listener>();

export function loadTokens(): Tokens | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Tokens) : null;
  } catch {
    return null;
  }
}

export function saveTokens(tokens: Tokens | null): void {
  if (tokens) localStorage.setItem(KEY, JSON.stringify(tokens));
  else localStorage.removeItem(KEY);
  listeners.forEach((l) => l(tokens));
}

export function onTokens(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
