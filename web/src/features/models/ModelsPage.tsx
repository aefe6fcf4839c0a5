// Models: versions grouped by name with their lineage (base model, training task), status and accuracy;
// register one (from an installed base model; a finished training registers from its own page), test it
// (cases, a dataset or the held-out split), deploy, undeploy, roll back (deploy an earlier version).
import { useMemo, useState } from 'react';
import { Alert, Button, Card, Collapse, Form, Input, InputNumber, Modal, Radio, Select, Space, Table, Tag, Typography, message } from 'antd';
import { Link } from 'react-router-dom';
import {
  useDatasetsQuery, useDeployModelMutation, useModelsQuery, useRegisterModelMutation, useTestModelMutation, useUndeployModelMutation,
} from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Model } from '../../api/types';
import { Loadable } from '../../components/States';
import { STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';

function TestModel({ model, onDone }: { model: Model; onDone: () => void }) {
  const { t, lang } = useI18n();
  const [kind, setKind] = useState<'cases' | 'dataset' | 'split'>('cases');
  const [test, testing] = useTestModelMutation();
  const datasets = useDatasetsQuery({ status: 'valid', page_size: 100 });
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const submit = async (v: { cases?: string; dataset_id?: string; limit?: number }) => {
    let body: Record<string, unknown>;
    if (kind === 'cases') {
      const cases = (v.cases ?? '').split('\n').map((l) => l.split('=>')).filter((p) => p.length === 2 && p[0].trim())
        .map(([question, expected]) => ({ question: question.trim(), expected: expected.trim() }));
      body = { cases };
    } else if (kind === 'dataset') body = { dataset_id: v.dataset_id, limit: v.limit ?? 50 };
    else body = { split: 'eval' };
    try {
      await test({ id: model.id, body }).unwrap();
      onDone();
    } catch (e) {
      setFailure(e as ApiFailure);
    }
  };
  return (
    <Form layout="vertical" onFinish={submit}>
      <Radio.Group value={kind} onChange={(e) => setKind(e.target.value)} style={{ marginBottom: 16 }}>
        <Radio.Button value="cases">{t('testCases')}</Radio.Button>
        <Radio.Button value="dataset">{t('dataset')}</Radio.Button>
        <Radio.Button value="split">{t('heldOut')}</Radio.Button>
      </Radio.Group>
      {kind === 'cases' && <Form.Item name="cases" label={t('testCasesHelp')}><Input.TextArea rows={5} placeholder="What is Bonsai? => platform" /></Form.Item>}
      {kind === 'dataset' && (
        <Space>
          <Form.Item name="dataset_id" label={t('dataset')} rules={[{ required: true, message: t('required') }]}>
            <Select style={{ width: 260 }} options={(datasets.data?.items ?? []).map((d) => ({ value: d.id, label: d.name }))} />
          </Form.Item>
          <Form.Item name="limit" label={t('limit')}><InputNumber min={1} max={1000} /></Form.Item>
        </Space>
      )}
      {failure && <Alert type="error" showIcon role="alert" message={describeError(failure, lang)} style={{ marginBottom: 16 }} />}
      <Button type="primary" htmlType="submit" loading={testing.isLoading}>{t('runTest')}</Button>
    </Form>
  );
}

function Report({ model }: { model: Model }) {
  const { t } = useI18n();
  const report = model.test_report as { cases?: { question: string; expected?: string; answer?: string; correct?: boolean; response_ms?: number }[]; error?: string } | null;
  if (report?.error) return <Typography.Text type="danger">{String(report.error)}</Typography.Text>;
  if (!report?.cases?.length) return <Typography.Text type="secondary">{t('noTestYet')}</Typography.Text>;
  return (
    <Table size="small" rowKey={(_, i) => String(i)} dataSource={report.cases} pagination={{ pageSize: 5 }}
      columns={[
        { title: t('question'), dataIndex: 'question' },
        { title: t('expected'), dataIndex: 'expected' },
        { title: t('answer'), dataIndex: 'answer' },
        { title: t('passed'), dataIndex: 'correct', render: (p?: boolean) => (p ? <Tag color="green">✓</Tag> : <Tag color="red">✗</Tag>) },
        { title: 'ms', dataIndex: 'response_ms' },
      ]} />
  );
}

export default function ModelsPage() {
  const { t, lang } = useI18n();
  const { data, isLoading, error, refetch } = useModelsQuery({ page_size: 100 }, { pollingInterval: 4000 });
  const [deploy] = useDeployModelMutation();
  const [undeploy] = useUndeployModelMutation();
  const [register, registering] = useRegisterModelMutation();
  const [registerOpen, setRegisterOpen] = useState(false);
  const [testing, setTesting] = useState<Model | null>(null);
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  const groups = useMemo(() => {
    const by = new Map<string, Model[]>();
    for (const m of data?.items ?? []) by.set(m.name, [...(by.get(m.name) ?? []), m]);
    return Array.from(by.entries()).map(([name, versions]) => ({ name, versions: versions.sort((a, b) => b.version - a.version) }));
  }, [data]);

  return (
    <Card title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuModels')}</Typography.Title>}
      extra={<Button type="primary" onClick={() => setRegisterOpen(true)}>{t('registerModel')}</Button>}>
      <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!groups.length} emptyText={t('noModels')}>
        <Collapse defaultActiveKey={groups.map((g) => g.name)}
          items={groups.map((g) => ({
            key: g.name,
            label: <Space><b>{g.name}</b><Tag>{g.versions.length} {t('versions')}</Tag>{g.versions.some((v) => v.deployed) && <Tag color="green">{t('deployed')}</Tag>}</Space>,
            children: (
              <Table<Model> size="small" rowKey="id" dataSource={g.versions} pagination={false}
                expandable={{ expandedRowRender: (m) => <Report model={m} /> }}
                columns={[
                  { title: t('version'), dataIndex: 'version', render: (v: number) => `v${v}` },
                  { title: t('status'), dataIndex: 'status', render: (s: string, m) => <Space><Tag color={STATUS_COLOR[s]} data-testid="model-status">{s}</Tag>{m.deployed && <Tag color="green">{t('deployed')}</Tag>}</Space> },
                  { title: t('lineage'), render: (_, m) => (
                    <span>{m.base_model_id}{m.training_task_id && <> ← <Link to={`/training/${m.training_task_id}`}>{t('training')}</Link></>}</span>
                  ) },
                  { title: t('accuracy'), dataIndex: 'accuracy', render: (a?: number | null) => <span data-testid="model-accuracy">{a == null ? '—' : `${(a * 100).toFixed(1)}%`}</span> },
                  { title: t('created'), dataIndex: 'created_at', render: when },
                  { title: '', render: (_, m) => (
                    <Space>
                      {!m.deployed && <Button size="small" type="primary" disabled={m.status !== 'ready'} onClick={() => deploy(m.id).unwrap().then(() => message.success(t('deployedOk'))).catch(fail)}>
                        {g.versions.some((v) => v.deployed && v.version > m.version) ? t('rollBack') : t('deploy')}</Button>}
                      {m.deployed && <Button size="small" onClick={() => undeploy(m.id).unwrap().catch(fail)}>{t('undeploy')}</Button>}
                      <Button size="small" disabled={m.status !== 'ready'} onClick={() => setTesting(m)}>{t('test')}</Button>
                    </Space>
                  ) },
                ]} />
            ),
          }))} />
      </Loadable>
      <Modal open={registerOpen} title={t('registerModel')} onCancel={() => setRegisterOpen(false)} footer={null} destroyOnClose>
        <Form layout="vertical" initialValues={{ base_model_id: 'demo-tiny' }}
          onFinish={(v: { name: string; base_model_id: string }) => register(v).unwrap().then(() => setRegisterOpen(false)).catch(fail)}>
          <Form.Item label={t('modelName')} name="name" rules={[{ required: true, message: t('required') }]}><Input /></Form.Item>
          <Form.Item label={t('baseModel')} name="base_model_id" extra={t('registerFromTaskHint')} rules={[{ required: true, message: t('required') }]}><Input /></Form.Item>
          <Button type="primary" htmlType="submit" loading={registering.isLoading}>{t('register')}</Button>
        </Form>
      </Modal>
      <Modal open={!!testing} title={`${t('test')} ${testing?.name ?? ''} v${testing?.version ?? ''}`} onCancel={() => setTesting(null)} footer={null} destroyOnClose width={640}>
        {testing && <TestModel model={testing} onDone={() => { setTesting(null); message.success(t('testStarted')); }} />}
      </Modal>
    </Card>
  );
}
