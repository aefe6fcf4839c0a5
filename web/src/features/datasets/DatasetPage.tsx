// One dataset: its status (followed live while it validates), stats, the per-line errors table, a preview of
// its records, its versions, adding a version, validating again (optionally counting tokens), archiving.
import { useState } from 'react';
import { Alert, Button, Card, Descriptions, Drawer, Popconfirm, Space, Table, Tabs, Tag, Typography, message } from 'antd';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { useArchiveMutation, useDatasetQuery, usePreviewQuery, useValidateMutation } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { DatasetVersion } from '../../api/types';
import { Loadable } from '../../components/States';
import { bytes, STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import { BaseModelSelect } from '../models/BaseModelSelect';
import { UploadBox } from './UploadBox';

interface LineError {
  line: number;
  record?: number;
  field?: string | null;
  kind?: string;
  message: string;
}

interface Summary {
  min: number;
  mean: number;
  max: number;
  total: number;
}

const BUSY = ['uploaded', 'validating'];

/** A previewed record (normalised to chat messages) as prompt and answer; anything else as its JSON. */
function turns(item: unknown): { prompt: string; answer: string } {
  const messages = (item as { messages?: { role: string; content: string }[] })?.messages;
  if (!Array.isArray(messages)) return { prompt: JSON.stringify(item), answer: '' };
  const text = (roles: string[]) => messages.filter((m) => roles.includes(m.role)).map((m) => m.content).join('\n');
  return { prompt: text(['system', 'user']), answer: text(['assistant']) };
}

function Preview({ id }: { id: string }) {
  const { t } = useI18n();
  const [offset, setOffset] = useState(0);
  const { data, isLoading, error } = usePreviewQuery({ id, offset, limit: 10 });
  const rows = (data?.items ?? []).map((item, i) => ({ key: offset + i, n: offset + i + 1, ...turns(item) }));
  return (
    <Loadable loading={isLoading} error={error} empty={!rows.length} emptyText={t('noRecords')}>
      <div data-testid="preview-table"><Table
        size="small"
        dataSource={rows}
        pagination={false}
        columns={[
          { title: '#', dataIndex: 'n', width: 60 },
          { title: t('prompt'), dataIndex: 'prompt', render: (s: string) => <span style={{ whiteSpace: 'pre-wrap' }}>{s}</span> },
          { title: t('answer'), dataIndex: 'answer', render: (s: string) => <span style={{ whiteSpace: 'pre-wrap' }}>{s}</span> },
        ]}
      /></div>
      <Space style={{ marginTop: 8 }}>
        <Button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - 10))}>{t('previous')}</Button>
        <Button disabled={rows.length < 10} onClick={() => setOffset(offset + 10)}>{t('next')}</Button>
      </Space>
    </Loadable>
  );
}

export default function DatasetPage() {
  const { id = '' } = useParams();
  const { t, lang } = useI18n();
  const navigate = useNavigate();
  const [poll, setPoll] = useState(1500);
  const { data, isLoading, error, refetch } = useDatasetQuery(id, { pollingInterval: poll });
  const [validate, validating] = useValidateMutation();
  const [archive] = useArchiveMutation();
  const [tokenizer, setTokenizer] = useState('');
  const [adding, setAdding] = useState(false);
  const status = data?.status;
  const busy = !!status && BUSY.includes(status);
  if (data && busy !== (poll > 0)) setPoll(busy ? 1500 : 0);

  const stats = (data?.stats ?? null) as Record<string, unknown> | null;
  const errors = ((data?.errors ?? []) as unknown as LineError[]).map((e, i) => ({ ...e, key: i }));
  const summary = (name: string) => {
    const s = stats?.[name] as Summary | null | undefined;
    return s ? `${s.min} / ${s.mean.toFixed(1)} / ${s.max} (Σ ${s.total})` : '—';
  };

  return (
    <Loadable loading={isLoading} error={error} onRetry={refetch}>
      {data && (
        <Card
          title={
            <Space>
              <Typography.Title level={4} style={{ margin: 0 }} data-testid="dataset-name">{data.name}</Typography.Title>
              <Tag color={STATUS_COLOR[data.status]} data-testid="dataset-status">{data.status}</Tag>
            </Space>
          }
          extra={
            <Space>
              <Link to={`/training?dataset=${id}`}>{t('trainingsOnDataset')}</Link>
              <BaseModelSelect optional placeholder={t('tokenizerModel')} value={tokenizer || undefined} onChange={(v) => setTokenizer(v ?? '')} style={{ width: 220 }} />
              <Button loading={validating.isLoading} disabled={busy || status === 'archived'}
                onClick={() => validate({ id, tokenizer_model_id: tokenizer || undefined }).unwrap()
                  .then(() => setPoll(1500))
                  .catch((e: ApiFailure) => message.error(describeError(e, lang)))}>
                {t('validate')}
              </Button>
              <Button disabled={status === 'archived'} onClick={() => setAdding(true)}>{t('addVersion')}</Button>
              <Popconfirm title={t('archiveConfirm')} onConfirm={() => archive(id).unwrap().then(() => navigate('/datasets')).catch((e: ApiFailure) => message.error(describeError(e, lang)))}>
                <Button danger disabled={status === 'archived'}>{t('archive')}</Button>
              </Popconfirm>
            </Space>
          }
        >
          {busy && <Alert type="info" showIcon message={t('validatingLive')} style={{ marginBottom: 16 }} />}
          <Descriptions size="small" column={3} bordered>
            <Descriptions.Item label={t('file')}>{data.filename}</Descriptions.Item>
            <Descriptions.Item label={t('format')}>{data.format}</Descriptions.Item>
            <Descriptions.Item label={t('size')}>{bytes(data.file_size)}</Descriptions.Item>
            <Descriptions.Item label={t('version')}>{data.version}</Descriptions.Item>
            <Descriptions.Item label={t('records')}><span data-testid="record-count">{data.record_count ?? '—'}</span></Descriptions.Item>
            <Descriptions.Item label={t('errorsCount')}>{data.error_count ?? 0}</Descriptions.Item>
            <Descriptions.Item label={t('duplicates')}>{String(stats?.duplicates ?? '—')}</Descriptions.Item>
            <Descriptions.Item label={t('promptChars')}>{summary('prompt_chars')}</Descriptions.Item>
            <Descriptions.Item label={t('answerChars')}>{summary('answer_chars')}</Descriptions.Item>
            <Descriptions.Item label={t('promptTokens')}>{summary('prompt_tokens')}</Descriptions.Item>
            <Descriptions.Item label={t('answerTokens')}>{summary('answer_tokens')}</Descriptions.Item>
            <Descriptions.Item label={t('description')}>{data.description || '—'}</Descriptions.Item>
          </Descriptions>
          <Tabs
            style={{ marginTop: 16 }}
            defaultActiveKey={errors.length ? 'errors' : 'preview'}
            items={[
              { key: 'preview', label: t('preview'), children: status === 'valid' ? <Preview id={id} /> : <Typography.Text type="secondary">{t('previewAfterValidation')}</Typography.Text> },
              {
                key: 'errors',
                label: `${t('lineErrors')} (${data.error_count ?? errors.length})`,
                children: (
                  <div data-testid="errors-table"><Table size="small" dataSource={errors} locale={{ emptyText: t('noErrors') }}
                    columns={[
                      { title: t('line'), dataIndex: 'line', width: 80 },
                      { title: t('field'), dataIndex: 'field', width: 160, render: (f?: string | null) => f ?? '—' },
                      { title: t('reason'), dataIndex: 'message' },
                    ]} /></div>
                ),
              },
              {
                key: 'versions',
                label: t('versionList'),
                children: (
                  <Table<DatasetVersion> size="small" rowKey="version" dataSource={data.versions} pagination={false}
                    columns={[
                      { title: t('version'), dataIndex: 'version' },
                      { title: t('status'), dataIndex: 'status', render: (s: string) => <Tag color={STATUS_COLOR[s]}>{s}</Tag> },
                      { title: t('file'), dataIndex: 'filename' },
                      { title: t('records'), dataIndex: 'record_count', render: (n?: number | null) => n ?? '—' },
                      { title: t('errorsCount'), dataIndex: 'error_count', render: (n?: number | null) => n ?? '—' },
                      { title: t('uploaded'), dataIndex: 'created_at', render: when },
                    ]} />
                ),
              },
            ]}
          />
          <Drawer open={adding} onClose={() => setAdding(false)} title={t('addVersion')} width={560} destroyOnClose>
            <UploadBox datasetId={id} onUploaded={() => { setAdding(false); setPoll(1500); refetch(); }} />
          </Drawer>
        </Card>
      )}
    </Loadable>
  );
}
