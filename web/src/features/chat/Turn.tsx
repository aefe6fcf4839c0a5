// One question and its answer in a conversation: both as plain text (what people and models write is never
// markup), the response time, whether it came from the cache, was stopped or cut at its length, and a delete.
import { Button, Popconfirm, Space, Tag, Tooltip, Typography } from 'antd';
import type { Question } from '../../api/types';
import { useI18n } from '../../i18n';

/** Where a live answer is: still streaming, stopped by the user, or done. */
export type LiveState = 'streaming' | 'stopped' | 'done';

export default function Turn({ q, live, onDelete }: { q: Question; live?: LiveState; onDelete?: () => void }) {
  const { t } = useI18n();
  return (
    <div style={{ marginBottom: 16 }} data-testid="turn" data-live={live ? 'true' : undefined} data-state={live}>
      <div style={{ textAlign: 'right' }}>
        <Typography.Text style={{ background: '#f6ffed', padding: '6px 10px', borderRadius: 8, display: 'inline-block', whiteSpace: 'pre-wrap' }} data-testid="question">{q.question}</Typography.Text>
      </div>
      <div style={{ marginTop: 6 }}>
        <Typography.Paragraph style={{ background: '#fafafa', padding: '6px 10px', borderRadius: 8, whiteSpace: 'pre-wrap', marginBottom: 2 }} data-testid="answer" aria-live={live === 'streaming' ? 'polite' : undefined}>
          {q.answer ? q.answer : q.status === 'pending' ? '…' : q.answer === '' ? t('emptyAnswer') : q.status}
        </Typography.Paragraph>
        <Space size="small">
          {q.response_ms != null && <Typography.Text type="secondary" style={{ fontSize: 12 }}>{(q.response_ms / 1000).toFixed(2)} s</Typography.Text>}
          {q.cached && <Tag>{t('cached')}</Tag>}
          {(q.finish_reason === 'cancelled' || live === 'stopped') && <Tag color="orange" data-testid="stopped-tag">{t('stoppedTag')}</Tag>}
          {q.finish_reason === 'length' && <Tooltip title={t('cutAtLengthHelp')}><Tag>{t('cutAtLength')}</Tag></Tooltip>}
          {live === 'streaming' && <Typography.Text type="secondary" style={{ fontSize: 12 }}>{t('generating')}</Typography.Text>}
          {onDelete && (
            <Popconfirm title={t('deleteQuestionConfirm')} onConfirm={onDelete}>
              <Button size="small" type="link" danger>{t('delete')}</Button>
            </Popconfirm>
          )}
        </Space>
      </div>
    </div>
  );
}
