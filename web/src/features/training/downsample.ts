// Loss curves can hold tens of thousands of points; a chart needs at most a few hundred. Largest-Triangle-
// Three-Buckets keeps the curve's shape (peaks and dips survive, first and last points are kept) in O(n).
export interface Point {
  x: number;
  y: number;
}

export function downsample(points: Point[], threshold: number): Point[] {
  const n = points.length;
  if (threshold >= n || threshold < 3) return points.slice();
  const sampled: Point[] = [points[0]];
  const every = (n - 2) / (threshold - 2);
  let a = 0;
  for (let i = 0; i < threshold - 2; i++) {
    // The average of the next bucket is the third corner of the triangle.
    const nextStart = Math.floor((i + 1) * every) + 1;
    const nextEnd = Math.min(Math.floor((i + 2) * every) + 1, n);
    let avgX = 0;
    let avgY = 0;
    for (let j = nextStart; j < nextEnd; j++) {
      avgX += points[j].x;
      avgY += points[j].y;
    }
    const count = Math.max(1, nextEnd - nextStart);
    avgX /= count;
    avgY /= count;
    const start = Math.floor(i * every) + 1;
    const end = Math.floor((i + 1) * every) + 1;
    let best = start;
    let bestArea = -1;
    for (let j = start; j < end; j++) {
      const area = Math.abs((points[a].x - avgX) * (points[j].y - points[a].y) - (points[a].x - points[j].x) * (avgY - points[a].y));
      if (area > bestArea) {
        bestArea = area;
        best = j;
      }
    }
    sampled.push(points[best]);
    a = best;
  }
  sampled.push(points[n - 1]);
  return sampled;
}

/** A training run's progress points as chart series: loss and (where measured) eval loss, by step. */
export function lossSeries(
  history: { step: number; loss: number; eval_loss?: number | null }[],
  maxPoints = 600,
): { loss: Point[]; evalLoss: Point[] } {
  const loss = history.filter((p) => Number.isFinite(p.loss)).map((p) => ({ x: p.step, y: p.loss }));
  const evalLoss = history
    .filter((p) => p.eval_loss != null && Number.isFinite(p.eval_loss))
    .map((p) => ({ x: p.step, y: p.eval_loss as number }));
  return { loss: downsample(loss, maxPoints), evalLoss: downsample(evalLoss, maxPoints) };
}
