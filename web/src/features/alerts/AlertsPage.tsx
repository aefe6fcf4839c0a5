// Alerts: filter by severity and status (active = open or acknowledged); acknowledge an open one (with a note:
// someone is on it) and resolve an open or acknowledged one; the subject links to its task or model.
import { useState } from 'react';
import { Link } from 'react-router-dom';
import { Button, Card, Input, Modal, Select, Space, Table, Tag, Typography, message } from 'antd';
import { api, useAcknowledgeAlertMutation, useAlertsQuery, useResolveAlertMutation } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Alert } from '../../api/types';
import { Loadable } from '../../components/States';
import { STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import { store } from '../../store';
import type { Key } from '../../i18n/messages';

/** The page of what an alert is about: `TrainingTask/<id>` and `Model/<id>` (node alerts have none). */
export function subjectLink(subject: string): string | null {
  const [type, id] = subject.split('/');
  if (!id || !/^[0-9a-f-]{36}$/i.test(id)) return null;
  return type === 'TrainingTask' ? `/training/${id}` : type === 'Model' ? `/models/${id}` : null;
}

export default function AlertsPage() {
  const { t, lang } = useI18n();
  const [status, setStatus] = useState<string | undefined>('active');
  const [severity, setSeverity] = useState<string | undefined>();
  const [page, setPage] = useState(1);
  const { data, isLoading, error, refetch } = useAlertsQuery({ status, severity, page, page_size: 20 }, { pollingInterval: 15000 });
  const [ack] = useAcknowledgeAlertMutation();
  const [resolve] = useResolveAlertMutation();
  const [acting, setActing] = useState<{ alert: Alert; action: 'ack' | 'resolve' } | null>(null);
  const [note, setNote] = useState('');
  const act = async () => {
    if (!acting) return;
    try {
      const run = acting.action === 'ack' ? ack : resolve;
      await run({ id: acting.alert.id, note: note || undefined }).unwrap();
      setActing(null);
      setNote('');
      // The list and the header's count are views: they show the change a moment after the command; both
      // look again shortly.
      setTimeout(() => store.dispatch(api.util.invalidateTags(['Alerts'])), 1000);
    } catch (e) {
      message.error(describeError(e as ApiFailure, lang));
    }
  };
  return (
    <Card title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuAlerts')}</Typography.Title>}
      extra={<Space>
        <span data-testid="alert-status-filter"><Select allowClear placeholder={t('status')} style={{ width: 230 }} value={status} onChange={(v) => { setStatus(v); setPage(1); }}
          options={['active', 'open', 'acknowledged', 'resolved'].map((s) => ({ value: s, label: t(`alert_${s}` as Key) }))} /></span>
        <span data-testid="alert-severity-filter"><Select allowClear placeholder={t('severity')} style={{ width: 160 }} value={severity} onChange={(v) => { setSeverity(v); setPage(1); }}
          options={['info', 'warning', 'critical'].map((s) => ({ value: s, label: s }))} /></span>
      </Space>}>
      <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!data?.items.length} emptyText={t('noAlerts')}>
        <Table<Alert> rowKey="id" dataSource={data?.items} pagination={{ current: page, total: data?.total, pageSize: 20, onChange: setPage }}
          columns={[
            { title: t('severity'), dataIndex: 'severity', render: (s: string) => <Tag color={STATUS_COLOR[s]}>{s}</Tag> },
            { title: t('kind'), dataIndex: 'kind' },
            { title: t('message'), dataIndex: 'message', render: (text: string, a) => (
              <span data-testid="alert-message">{text}{subjectLink(a.subject) && <> <Link to={subjectLink(a.subject) as string}>{t('open')}</Link></>}</span>
            ) },
            { title: t('status'), dataIndex: 'status', render: (s: string, a) => (
              <Space direction="vertical" size={0}>
                <Tag color={STATUS_COLOR[s]} data-testid="alert-status">{s}</Tag>
                {a.acknowledge_note && <Typography.Text type="secondary" data-testid="alert-ack-note">{a.acknowledge_note}</Typography.Text>}
                {a.resolve_note && <Typography.Text type="secondary" data-testid="alert-resolve-note">{a.resolve_note}</Typography.Text>}
              </Space>
            ) },
            { title: t('raised'), dataIndex: 'raised_at', render: (w: string, a) => `${when(w)}${a.times_raised > 1 ? ` ×${a.times_raised}` : ''}` },
            { title: '', render: (_, a) => (
              <Space>
                {a.status === 'open' && <Button size="small" onClick={() => setActing({ alert: a, action: 'ack' })}>{t('acknowledge')}</Button>}
                {a.status !== 'resolved' && <Button size="small" onClick={() => setActing({ alert: a, action: 'resolve' })}>{t('resolve')}</Button>}
              </Space>
            ) },
          ]} />
      </Loadable>
      <Modal open={!!acting} okButtonProps={{ id: 'alert-action-ok' }} title={acting?.action === 'ack' ? t('acknowledge') : t('resolve')} onOk={act} onCancel={() => setActing(null)}>
        <Typography.Paragraph>{acting?.alert.message}</Typography.Paragraph>
        <Input.TextArea id="alert-note" placeholder={t('note')} value={note} onChange={(e) => setNote(e.target.value)} maxLength={1000} />
      </Modal>
    </Card>
  );
}
