// The training form's presets and the same range checks the API applies (domain TrainingConfig::validated),
// so a bad value is shown next to its field before anything is sent.
export interface LoraConfig {
  rank: number;
  alpha: number;
  dropout: number;
  targets: string[];
  learning_rate: number;
  epochs: number;
  max_steps?: number | null;
  batch_size: number;
  grad_accum: number;
  max_seq_len: number;
  warmup_steps: number;
  weight_decay: number;
  max_grad_norm: number;
  eval_split: number;
  eval_every: number;
  checkpoint_every: number;
  device: string;
  merge: boolean;
}

export const TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'all'];

const base: LoraConfig = {
  rank: 8, alpha: 16, dropout: 0, targets: ['q', 'v'], learning_rate: 2e-4, epochs: 3, batch_size: 4, grad_accum: 1,
  max_seq_len: 512, warmup_steps: 0, weight_decay: 0, max_grad_norm: 1, eval_split: 0, eval_every: 0,
  checkpoint_every: 50, device: 'cpu', merge: true,
};

export const PRESETS: Record<'quick' | 'balanced' | 'thorough' | 'faq', LoraConfig> = {
  quick: { ...base, epochs: 1, max_steps: 20, max_seq_len: 128 },
  balanced: base,
  thorough: { ...base, rank: 16, alpha: 32, targets: ['all'], epochs: 5, eval_split: 0.1, eval_every: 20 },
  // What the README says makes demo-tiny answer the FAQ.
  faq: { ...base, rank: 16, alpha: 32, targets: ['all'], learning_rate: 3e-3, epochs: 400, batch_size: 20, warmup_steps: 20, max_seq_len: 96 },
};

type Check = (c: LoraConfig) => string | null;
const range = (field: keyof LoraConfig, ok: (v: number) => boolean, why: string): [keyof LoraConfig, Check] => [
  field,
  (c) => (ok(Number(c[field])) ? null : why),
];

const CHECKS: [keyof LoraConfig, Check][] = [
  range('rank', (v) => Number.isInteger(v) && v >= 1 && v <= 256, 'must be 1 to 256'),
  range('alpha', (v) => v > 0 && v <= 4096, 'must be in (0, 4096]'),
  range('dropout', (v) => v >= 0 && v < 1, 'must be in [0, 1)'),
  ['targets', (c) => (c.targets.length && c.targets.every((t) => TARGETS.includes(t)) ? null : 'name at least one target')],
  range('learning_rate', (v) => v > 0 && v <= 1, 'must be in (0, 1]'),
  range('epochs', (v) => Number.isInteger(v) && v >= 1 && v <= 1000, 'must be 1 to 1000'),
  ['max_steps', (c) => (c.max_steps == null || (Number.isInteger(c.max_steps) && c.max_steps >= 1 && c.max_steps <= 10_000_000) ? null : 'must be 1 to 10000000')],
  range('batch_size', (v) => Number.isInteger(v) && v >= 1 && v <= 1024, 'must be 1 to 1024'),
  range('grad_accum', (v) => Number.isInteger(v) && v >= 1 && v <= 1024, 'must be 1 to 1024'),
  range('max_seq_len', (v) => Number.isInteger(v) && v >= 8 && v <= 131072, 'must be 8 to 131072'),
  range('warmup_steps', (v) => Number.isInteger(v) && v >= 0 && v <= 10_000_000, 'must be at most 10000000'),
  range('weight_decay', (v) => v >= 0 && v <= 1, 'must be in [0, 1]'),
  range('max_grad_norm', (v) => v >= 0 && Number.isFinite(v), 'must be 0 (off) or positive'),
  range('eval_split', (v) => v >= 0 && v <= 0.5, 'must be in [0, 0.5]'),
  ['device', (c) => (['cpu', 'cuda'].includes(c.device) ? null : 'must be cpu or cuda')],
];

/** The first problem of each field, by field. */
export function checkConfig(config: LoraConfig): Partial<Record<keyof LoraConfig, string>> {
  const problems: Partial<Record<keyof LoraConfig, string>> = {};
  for (const [field, check] of CHECKS) {
    const why = check(config);
    if (why && !problems[field]) problems[field] = why;
  }
  return problems;
}
