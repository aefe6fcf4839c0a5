// The session as the pages see it: signed in or not (tokens present), the signed-in user's role, and what
// each role may open (the same table as the API's permissions, for menus and the "not allowed" page).
import { useSyncExternalStore } from 'react';
import { loadTokens, onTokens } from '../api/tokens';
import type { Role } from '../api/types';

export type Area = 'datasets' | 'training' | 'models' | 'alerts' | 'admin' | 'chat' | 'profile' | 'overview';

const ALLOWED: Record<Area, Role[]> = {
  overview: ['admin', 'trainer', 'user'],
  chat: ['admin', 'trainer', 'user'],
  profile: ['admin', 'trainer', 'user'],
  datasets: ['admin', 'trainer'],
  training: ['admin', 'trainer'],
  models: ['admin', 'trainer'],
  alerts: ['admin', 'trainer'],
  admin: ['admin'],
};

export function may(role: Role | undefined, area: Area): boolean {
  return !!role && ALLOWED[area].includes(role);
}

export function useSignedIn(): boolean {
  return useSyncExternalStore(
    (cb) => onTokens(cb),
    () => loadTokens() !== null,
  );
}
