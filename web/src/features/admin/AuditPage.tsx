// Admin: the audit log, the whole event store in commit order (paged by position), or one object's history
// as a timeline with its payloads (shown as text, never markup).
import { useState } from 'react';
import { Button, Card, Input, Select, Space, Table, Tag, Timeline, Typography } from 'antd';
import { useSearchParams } from 'react-router-dom';
import { useAuditEventsQuery, useAuditHistoryQuery } from '../../api/api';
import type { AuditEvent } from '../../api/types';
import { Loadable } from '../../components/States';
import { when } from '../../components/format';
import { useI18n } from '../../i18n';

const TYPES = ['User', 'Dataset', 'TrainingTask', 'Model', 'QaSession', 'Alert'];

function Payload({ value }: { value: unknown }) {
  return <pre style={{ margin: 0, fontSize: 12, whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>{JSON.stringify(value, null, 1)}</pre>;
}

function ObjectTimeline({ type, id }: { type: string; id: string }) {
  const { t } = useI18n();
  const { data, isLoading, error, refetch } = useAuditHistoryQuery({ type, id });
  return (
    <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!data?.length}>
      <div data-testid="audit-timeline"><Timeline
        items={(data ?? []).map((e) => ({
          children: (
            <div>
              <Space><Tag color="green">{e.event_type}</Tag><Typography.Text type="secondary">{when(e.recorded_at)} · #{e.sequence} · {t('by')} {String((e.metadata as Record<string, unknown>)?.actor ?? '—')}</Typography.Text></Space>
              <Payload value={e.payload} />
            </div>
          ),
        }))} /></div>
    </Loadable>
  );
}

export default function AuditPage() {
  const { t } = useI18n();
  const [params, setParams] = useSearchParams();
  const type = params.get('type');
  const id = params.get('id');
  const [cursor, setCursor] = useState<number[]>([0]);
  const after = cursor[cursor.length - 1];
  const page = useAuditEventsQuery({ after, limit: 50 }, { skip: !!(type && id) });
  const [draftType, setDraftType] = useState(type ?? 'User');
  const [draftId, setDraftId] = useState(id ?? '');

  return (
    <Card title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuAudit')}</Typography.Title>}
      extra={<Space>
        <Select value={draftType} onChange={setDraftType} style={{ width: 140 }} options={TYPES.map((x) => ({ value: x }))} />
        <Input placeholder={t('objectId')} value={draftId} onChange={(e) => setDraftId(e.target.value)} style={{ width: 320 }} />
        <Button onClick={() => draftId && setParams({ type: draftType, id: draftId.trim() })}>{t('showTimeline')}</Button>
        {type && id && <Button onClick={() => setParams({})}>{t('wholeLog')}</Button>}
      </Space>}>
      {type && id ? (
        <>
          <Typography.Title level={5}>{type} {id}</Typography.Title>
          <ObjectTimeline type={type} id={id} />
        </>
      ) : (
        <Loadable loading={page.isLoading} error={page.error} onRetry={page.refetch} empty={!page.data?.events.length}>
          <Table<AuditEvent> size="small" rowKey="position" dataSource={page.data?.events} pagination={false}
            expandable={{ expandedRowRender: (e) => <Payload value={e.payload} /> }}
            columns={[
              { title: '#', dataIndex: 'position', width: 80 },
              { title: t('when'), dataIndex: 'recorded_at', render: when },
              { title: t('object'), render: (_, e) => <a onClick={() => setParams({ type: e.aggregate_type, id: e.aggregate_id })}>{e.aggregate_type} {e.aggregate_id.slice(0, 8)}</a> },
              { title: t('event'), dataIndex: 'event_type', render: (x: string) => <Tag>{x}</Tag> },
            ]} />
          <Space style={{ marginTop: 12 }}>
            <Button disabled={cursor.length < 2} onClick={() => setCursor(cursor.slice(0, -1))}>{t('previous')}</Button>
            <Button disabled={page.data?.next_after == null} onClick={() => page.data?.next_after != null && setCursor([...cursor, page.data.next_after])}>{t('next')}</Button>
          </Space>
        </Loadable>
      )}
    </Card>
  );
}
