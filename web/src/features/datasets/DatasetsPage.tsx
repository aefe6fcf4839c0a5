// Datasets: the list (status filter, paging) and an upload box; a new upload opens its page.
import { useState } from 'react';
import { Button, Card, Drawer, Select, Space, Table, Tag, Typography } from 'antd';
import { Link, useNavigate } from 'react-router-dom';
import { useDatasetsQuery } from '../../api/api';
import type { Dataset } from '../../api/types';
import { Loadable } from '../../components/States';
import { bytes, STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import { UploadBox } from './UploadBox';

export default function DatasetsPage() {
  const { t } = useI18n();
  const navigate = useNavigate();
  const [status, setStatus] = useState<string | undefined>();
  const [page, setPage] = useState(1);
  const [uploading, setUploading] = useState(false);
  const { data, isLoading, error, refetch } = useDatasetsQuery({ status, page, page_size: 20 });
  return (
    <Card
      title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuDatasets')}</Typography.Title>}
      extra={
        <Space>
          <Select allowClear placeholder={t('status')} style={{ width: 160 }} value={status} onChange={(v) => { setStatus(v); setPage(1); }}
            options={['uploaded', 'validating', 'valid', 'invalid', 'archived'].map((s) => ({ value: s, label: s }))} />
          <Button type="primary" onClick={() => setUploading(true)}>{t('uploadDataset')}</Button>
        </Space>
      }
    >
      <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!data?.items.length} emptyText={t('noDatasets')}>
        <Table<Dataset>
          rowKey="id"
          dataSource={data?.items}
          pagination={{ current: page, total: data?.total, pageSize: 20, onChange: setPage }}
          columns={[
            { title: t('name'), dataIndex: 'name', render: (name: string, d) => <Link to={`/datasets/${d.id}`}>{name}</Link> },
            { title: t('status'), dataIndex: 'status', render: (s: string) => <Tag color={STATUS_COLOR[s]}>{s}</Tag> },
            { title: t('version'), dataIndex: 'version' },
            { title: t('records'), dataIndex: 'record_count', render: (n?: number | null) => n ?? '—' },
            { title: t('file'), dataIndex: 'filename' },
            { title: t('size'), dataIndex: 'file_size', render: (n: number) => bytes(n) },
            { title: t('updated'), dataIndex: 'updated_at', render: when },
          ]}
        />
      </Loadable>
      <Drawer open={uploading} onClose={() => setUploading(false)} title={t('uploadDataset')} width={560} destroyOnClose>
        <UploadBox onUploaded={(id) => { setUploading(false); navigate(`/datasets/${id}`); }} />
      </Drawer>
    </Card>
  );
}
