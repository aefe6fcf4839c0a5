// What people ask and what models answer is text, never markup: a question and an answer holding elements and
// scripts render as the characters they are, and nothing planted runs.
import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { I18nProvider } from '../../i18n';
import type { Question } from '../../api/types';
import Turn from './Turn';

const MARKUP = '<img src=x onerror="window.__xss=1">hi<script>window.__xss=2</script>';

describe('a turn of a conversation', () => {
  it('shows a question and an answer holding markup as text', () => {
    localStorage.setItem('bonsai.lang', 'en');
    const q = {
      question_id: 'q1', session_id: 's1', model_id: 'm1', status: 'answered', question: `Q ${MARKUP}`,
      answer: `A ${MARKUP}`, response_ms: 1250, finish_reason: 'stop', cached: false,
    } as unknown as Question;
    const { container } = render(<I18nProvider><Turn q={q} /></I18nProvider>);
    expect(screen.getByTestId('question').textContent).toBe(`Q ${MARKUP}`);
    expect(screen.getByTestId('answer').textContent).toBe(`A ${MARKUP}`);
    expect(container.querySelectorAll('img, script')).toHaveLength(0);
    expect((window as unknown as { __xss?: number }).__xss).toBeUndefined();
    expect(screen.getByText('1.25 s')).toBeTruthy();
  });

  it('marks a stopped answer', () => {
    const q = { question_id: 'q2', status: 'answered', question: 'Long?', answer: 'Partly', finish_reason: 'cancelled' } as unknown as Question;
    render(<I18nProvider><Turn q={q} /></I18nProvider>);
    expect(screen.getByTestId('stopped-tag')).toBeTruthy();
  });
});
