// A model name's accuracy history as chart points: every test of every version, oldest first. The model
// list gives each version's latest test (accuracy, tested_at); where the audit log can be read (admins), each
// version's every `ModelTested` event gives the tests before it too. Tests that could not run (their report
// holds an error, accuracy 0) are no measurement and are left out.
import type { AuditEvent, Model } from '../../api/types';

export interface AccuracyPoint {
  modelId: string;
  version: number;
  at: string;
  accuracy: number;
}

function failed(report: unknown): boolean {
  return !!report && typeof report === 'object' && 'error' in (report as Record<string, unknown>);
}

/** `versions`: the models of one name; `events`: model id to its audit history, where it was read. */
export function accuracyHistory(versions: Model[], events: Record<string, AuditEvent[] | undefined> = {}): AccuracyPoint[] {
  const points: AccuracyPoint[] = [];
  for (const m of versions) {
    const history = events[m.id];
    const tested = (history ?? []).filter((e) => e.event_type === 'ModelTested');
    if (history) {
      for (const e of tested) {
        const body = (e.payload as Record<string, { accuracy?: number; report?: unknown }> | null)?.ModelTested;
        if (body && typeof body.accuracy === 'number' && Number.isFinite(body.accuracy) && !failed(body.report)) {
          points.push({ modelId: m.id, version: m.version, at: e.recorded_at, accuracy: body.accuracy });
        }
      }
    }
    // The view's latest test, when the history did not have it (not readable, or not yet there).
    const latestAt = m.tested_at ? Date.parse(m.tested_at) : NaN;
    const known = tested.some((e) => Date.parse(e.recorded_at) >= latestAt - 1000);
    if (m.accuracy != null && m.tested_at && !failed(m.test_report) && !known) {
      points.push({ modelId: m.id, version: m.version, at: m.tested_at, accuracy: m.accuracy });
    }
  }
  return points.sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.version - b.version);
}
