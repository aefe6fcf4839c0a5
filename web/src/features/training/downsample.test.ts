// Chart data shaping: 20,000 loss points become a few hundred that keep the curve's ends and extremes, fast.
import { describe, expect, it } from 'vitest';
import { downsample, lossSeries } from './downsample';

const curve = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: 3 * Math.exp(-i / 3000) + 0.05 * Math.sin(i / 7), eval_loss: i % 500 === 0 ? 2.5 - i / 10000 : null }));

describe('downsampling', () => {
  it('reduces 20,000 points to the threshold, keeping the first and last', () => {
    const points = curve(20000).map((p) => ({ x: p.step, y: p.loss }));
    const started = performance.now();
    const out = downsample(points, 600);
    expect(performance.now() - started).toBeLessThan(200);
    expect(out).toHaveLength(600);
    expect(out[0]).toEqual(points[0]);
    expect(out[out.length - 1]).toEqual(points[points.length - 1]);
    expect(out.every((p, i) => i === 0 || p.x > out[i - 1].x)).toBe(true);
  });

  it('keeps a spike that a naive every-nth sample would drop', () => {
    const points = Array.from({ length: 10000 }, (_, i) => ({ x: i, y: i === 4321 ? 50 : 1 }));
    expect(downsample(points, 100).some((p) => p.y === 50)).toBe(true);
  });

  it('leaves short series alone', () => {
    const points = [{ x: 1, y: 2 }, { x: 2, y: 1 }];
    expect(downsample(points, 600)).toEqual(points);
  });

  it('shapes progress history into loss and eval-loss series', () => {
    const { loss, evalLoss } = lossSeries(curve(20000), 500);
    expect(loss).toHaveLength(500);
    expect(evalLoss).toHaveLength(40);
    expect(evalLoss[0]).toEqual({ x: 1, y: 2.5 });
  });
});
