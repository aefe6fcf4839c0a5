// Small formatting helpers shared by the pages (sizes, durations, dates, status colours).
export function bytes(n: number | undefined | null): string {
  if (n == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function duration(secs: number | undefined | null): string {
  if (secs == null || !isFinite(secs)) return '—';
  const s = Math.max(0, Math.round(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
}

export function when(iso: string | undefined | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export const STATUS_COLOR: Record<string, string> = {
  valid: 'green', completed: 'green', ready: 'green', resolved: 'green', answered: 'green',
  invalid: 'red', failed: 'red', critical: 'red',
  validating: 'blue', running: 'blue', exporting: 'blue', uploaded: 'default', queued: 'default',
  stopped: 'orange', stopping: 'orange', interrupted: 'gold', acknowledged: 'orange', open: 'volcano', warning: 'orange', active: 'volcano', archived: 'default',
};

/** A parameter count as people say it: 135M, 1.7B. */
export function count(n: number | undefined | null): string {
  if (n == null || !isFinite(n)) return '—';
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}K`;
  return String(n);
}
