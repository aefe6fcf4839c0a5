// A small SVG line chart of loss curves (no chart library: the training page stays light). Series are
// downsampled before they get here, so even a 20,000-step run draws a few hundred points.
import type { Point } from './downsample';

export interface Series {
  name: string;
  color: string;
  points: Point[];
  dashed?: boolean;
}

const W = 720;
const H = 260;
const PAD = { l: 48, r: 16, t: 12, b: 28 };

function path(points: Point[], sx: (x: number) => number, sy: (y: number) => number): string {
  return points.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join('');
}

export function LossChart({ series, emptyText }: { series: Series[]; emptyText: string }) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    return <div style={{ height: H, display: 'flex', alignItems: 'center', justifyContent: 'center', color: '#999' }}>{emptyText}</div>;
  }
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const p of all) {
    x0 = Math.min(x0, p.x);
    x1 = Math.max(x1, p.x);
    y0 = Math.min(y0, p.y);
    y1 = Math.max(y1, p.y);
  }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x: number) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const sy = (y: number) => H - PAD.b - ((y - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  return (
    <svg viewBox={`0 0 ${W} ${H}`} width="100%" role="img" aria-label="loss chart" data-testid="loss-chart" data-points={all.length}>
      {ticks.map((y) => (
        <g key={y}>
          <line x1={PAD.l} x2={W - PAD.r} y1={sy(y)} y2={sy(y)} stroke="#f0f0f0" />
          <text x={PAD.l - 6} y={sy(y) + 4} fontSize="10" textAnchor="end" fill="#888">{y.toPrecision(3)}</text>
        </g>
      ))}
      <text x={PAD.l} y={H - 8} fontSize="10" fill="#888">{x0}</text>
      <text x={W - PAD.r} y={H - 8} fontSize="10" fill="#888" textAnchor="end">{x1}</text>
      {series.map((s) => (
        <path key={s.name} d={path(s.points, sx, sy)} fill="none" stroke={s.color} strokeWidth={1.6} strokeDasharray={s.dashed ? '5 3' : undefined}>
          <title>{s.name}</title>
        </path>
      ))}
      {series.map((s, i) => (
        <g key={`legend-${s.name}`} transform={`translate(${W - PAD.r - 140}, ${PAD.t + 4 + i * 14})`}>
          <rect width="10" height="3" y="4" fill={s.color} />
          <text x="14" y="9" fontSize="10">{s.name}</text>
        </g>
      ))}
    </svg>
  );
}
