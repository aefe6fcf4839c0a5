// A 20,000-step loss curve renders as a few hundred SVG points, quickly (the page does not freeze).
import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { lossSeries } from './downsample';
import { LossChart } from './LossChart';

describe('the loss chart', () => {
  it('draws a 20,000-point run downsampled', () => {
    const history = Array.from({ length: 20000 }, (_, i) => ({ step: i + 1, loss: 2 / Math.sqrt(i + 1), eval_loss: i % 1000 === 0 ? 1.5 : null }));
    const started = performance.now();
    const { loss, evalLoss } = lossSeries(history);
    render(<LossChart series={[{ name: 'loss', color: 'green', points: loss }, { name: 'eval', color: 'red', points: evalLoss }]} emptyText="none" />);
    expect(performance.now() - started).toBeLessThan(1000);
    const chart = screen.getByTestId('loss-chart');
    expect(Number(chart.getAttribute('data-points'))).toBe(600 + 20);
    expect(chart.querySelectorAll('path')).toHaveLength(2);
    expect(chart.querySelector('path')?.getAttribute('d')?.split('L')).toHaveLength(600);
  });

  it('says so when there is nothing yet', () => {
    render(<LossChart series={[{ name: 'loss', color: 'green', points: [] }]} emptyText="Waiting for the first step" />);
    expect(screen.getByText('Waiting for the first step')).toBeInTheDocument();
  });
});
