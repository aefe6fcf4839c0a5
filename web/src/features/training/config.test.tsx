// Form validation of the training settings: the same ranges as the API, shown next to the field.
import { describe, expect, it } from 'vitest';
import { checkConfig, PRESETS } from './config';

describe('training settings checks', () => {
  it('accept every preset', () => {
    for (const preset of Object.values(PRESETS)) expect(checkConfig(preset)).toEqual({});
  });

  it('name each bad field with the API reason', () => {
    const bad = { ...PRESETS.balanced, rank: 0, learning_rate: 2, eval_split: 0.7, targets: [], max_seq_len: 4, max_steps: 0 };
    expect(checkConfig(bad)).toEqual({
      rank: 'must be 1 to 256',
      learning_rate: 'must be in (0, 1]',
      eval_split: 'must be in [0, 0.5]',
      targets: 'name at least one target',
      max_seq_len: 'must be 8 to 131072',
      max_steps: 'must be 1 to 10000000',
    });
  });

  it('refuse a non-number (an emptied field)', () => {
    expect(checkConfig({ ...PRESETS.quick, epochs: NaN }).epochs).toBe('must be 1 to 1000');
  });
});
