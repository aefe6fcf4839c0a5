// Parameter counts as people say them, and where an alert's subject links to.
import { describe, expect, it } from 'vitest';
import { subjectLink } from '../features/alerts/AlertsPage';
import { count } from './format';

describe('parameter counts', () => {
  it('use K, M and B with one decimal below ten', () => {
    expect([count(950), count(3_700_000), count(134_515_008), count(1_711_376_384), count(null)]).toEqual(['950', '3.7M', '135M', '1.7B', '—']);
  });
});

describe('alert subjects', () => {
  it('link tasks and models to their pages, node alerts nowhere', () => {
    const id = '0190b2d4-0000-7000-8000-000000000000';
    expect(subjectLink(`TrainingTask/${id}`)).toBe(`/training/${id}`);
    expect(subjectLink(`Model/${id}`)).toBe(`/models/${id}`);
    expect(subjectLink('node/host-1/disk')).toBeNull();
    expect(subjectLink('Model/../../admin')).toBeNull();
  });
});
