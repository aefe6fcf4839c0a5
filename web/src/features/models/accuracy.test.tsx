// The accuracy history: shaped from the versions' latest tests and (for admins) every ModelTested event,
// without double counting, failed tests left out, oldest first; drawn as one point a test; test cases parsed
// from the `question => expected` lines.
import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { AuditEvent, Model } from '../../api/types';
import { AccuracyChart } from './AccuracyChart';
import { accuracyHistory } from './accuracy';
import { parseCases } from './TestModel';

function model(id: string, version: number, accuracy: number | null, tested_at: string | null, test_report: object | null = {}): Model {
  return {
    id, version, accuracy, tested_at, test_report, name: 'faq bot', owner_id: 'u', base_model_id: 'demo-tiny', source: {}, metrics: {},
    status: 'ready', deployed: false, created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z',
  } as Model;
}

function tested(sequence: number, at: string, accuracy: number, report: object = { cases: [] }): AuditEvent {
  return {
    position: sequence, aggregate_type: 'Model', aggregate_id: 'x', sequence, event_type: 'ModelTested', event_version: '1',
    payload: { ModelTested: { accuracy, report, test_id: null } }, metadata: {}, recorded_at: at,
  } as AuditEvent;
}

describe('accuracy history', () => {
  it('takes each version\'s latest test when the audit log is not readable', () => {
    const points = accuracyHistory([
      model('b', 2, 0.9, '2026-01-03T00:00:00Z'),
      model('a', 1, 0.5, '2026-01-02T00:00:00Z'),
      model('c', 3, null, null),
    ]);
    expect(points.map((p) => [p.version, p.accuracy])).toEqual([[1, 0.5], [2, 0.9]]);
  });

  it('takes every test from the events, once, oldest first, leaving out tests that could not run', () => {
    const events = {
      a: [
        { ...tested(1, '2026-01-01T00:00:00Z', 0), event_type: 'ModelRegistered' },
        tested(2, '2026-01-02T00:00:00.123456Z', 0.4),
        tested(3, '2026-01-04T00:00:00Z', 0, { error: 'no such dataset' }),
        tested(4, '2026-01-05T00:00:00.500001Z', 0.6),
      ],
    };
    // The view's latest test of `a` is the last event (its time written with another precision).
    const points = accuracyHistory([model('a', 1, 0.6, '2026-01-05T00:00:00.5Z'), model('b', 2, 0.8, '2026-01-03T00:00:00Z')], events);
    expect(points.map((p) => [p.version, p.accuracy])).toEqual([[1, 0.4], [2, 0.8], [1, 0.6]]);
  });

  it('adds a test the view has and the history not yet', () => {
    const points = accuracyHistory([model('a', 1, 0.7, '2026-01-09T00:00:00Z')], { a: [tested(2, '2026-01-02T00:00:00Z', 0.4)] });
    expect(points.map((p) => p.accuracy)).toEqual([0.4, 0.7]);
  });

  it('leaves out a latest test that failed', () => {
    expect(accuracyHistory([model('a', 1, 0, '2026-01-02T00:00:00Z', { error: 'boom' })])).toEqual([]);
  });

  it('draws one point a test, the current model\'s larger', () => {
    const points = accuracyHistory([model('a', 1, 0.5, '2026-01-02T00:00:00Z'), model('b', 2, 1, '2026-01-03T00:00:00Z')]);
    render(<AccuracyChart points={points} current="b" emptyText="none" />);
    const chart = screen.getByTestId('accuracy-chart');
    expect(chart.getAttribute('data-points')).toBe('2');
    const dots = screen.getAllByTestId('accuracy-point');
    expect(dots.map((d) => d.getAttribute('r'))).toEqual(['3.5', '5']);
    expect(dots[1].getAttribute('cy')).toBe('12');
    expect(screen.getByText('v1')).toBeInTheDocument();
  });

  it('says so when nothing was tested', () => {
    render(<AccuracyChart points={[]} emptyText="Not tested yet" />);
    expect(screen.getByText('Not tested yet')).toBeInTheDocument();
  });
});

describe('test cases typed as lines', () => {
  it('split at the last arrow and skip lines without one', () => {
    expect(parseCases('What is Bonsai? => platform\n\nno arrow\n a => b => c \n => nothing asked')).toEqual([
      { question: 'What is Bonsai?', expected: 'platform' },
      { question: 'a => b', expected: 'c' },
    ]);
  });
});
