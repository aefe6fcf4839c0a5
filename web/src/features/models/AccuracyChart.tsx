// A model name's accuracy over its tests as a small SVG chart (no chart library): one point a test, oldest on
// the left, 0-100 % up the side, each point labelled with its version and time; the points of the model
// the page is about are drawn larger.
import type { AccuracyPoint } from './accuracy';

const W = 720;
const H = 220;
const PAD = { l: 44, r: 16, t: 12, b: 30 };
const COLORS = ['#389e0d', '#1677ff', '#722ed1', '#eb2f96', '#fa8c16', '#13c2c2'];

export function AccuracyChart({ points, current, emptyText }: { points: AccuracyPoint[]; current?: string; emptyText: string }) {
  if (!points.length) {
    return <div style={{ height: 120, display: 'flex', alignItems: 'center', justifyContent: 'center', color: '#999' }} data-testid="accuracy-chart-empty">{emptyText}</div>;
  }
  const n = points.length;
  const sx = (i: number) => (n === 1 ? (PAD.l + W - PAD.r) / 2 : PAD.l + (i / (n - 1)) * (W - PAD.l - PAD.r));
  const sy = (a: number) => H - PAD.b - Math.min(1, Math.max(0, a)) * (H - PAD.t - PAD.b);
  const line = points.map((p, i) => `${i ? 'L' : 'M'}${sx(i).toFixed(1)},${sy(p.accuracy).toFixed(1)}`).join('');
  const label = n <= 12;
  return (
    <svg viewBox={`0 0 ${W} ${H}`} width="100%" role="img" aria-label="accuracy history" data-testid="accuracy-chart" data-points={n}>
      {[0, 0.25, 0.5, 0.75, 1].map((y) => (
        <g key={y}>
          <line x1={PAD.l} x2={W - PAD.r} y1={sy(y)} y2={sy(y)} stroke="#f0f0f0" />
          <text x={PAD.l - 6} y={sy(y) + 4} fontSize="10" textAnchor="end" fill="#888">{Math.round(y * 100)}%</text>
        </g>
      ))}
      <path d={line} fill="none" stroke="#bfbfbf" strokeWidth={1.2} />
      {points.map((p, i) => (
        <g key={`${p.modelId}-${p.at}-${i}`}>
          <circle cx={sx(i)} cy={sy(p.accuracy)} r={p.modelId === current ? 5 : 3.5} fill={COLORS[(p.version - 1) % COLORS.length]}
            data-testid="accuracy-point" data-version={p.version}>
            <title>{`v${p.version} · ${(p.accuracy * 100).toFixed(1)}% · ${new Date(p.at).toLocaleString()}`}</title>
          </circle>
          {label && <text x={sx(i)} y={H - 10} fontSize="10" textAnchor="middle" fill="#888">v{p.version}</text>}
        </g>
      ))}
    </svg>
  );
}
