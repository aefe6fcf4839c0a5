// Training: the task list with status and progress, and the create form (installed base model, a valid
// dataset and version, a preset, advanced LoRA settings with help and the API's own range checks).
import { useState } from 'react';
import {
  Button, Card, Collapse, Drawer, Form, Input, InputNumber, Progress, Segmented, Select, Space, Switch,
  Table, Tag, Typography, Alert,
} from 'antd';
import { Link, useNavigate, useSearchParams } from 'react-router-dom';
import { useCreateTaskMutation, useDatasetsQuery, useTasksQuery } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError, errorField } from '../../api/errors';
import type { Task } from '../../api/types';
import { Loadable } from '../../components/States';
import { STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import type { Key } from '../../i18n/messages';
import { BaseModelSelect } from '../models/BaseModelSelect';
import { checkConfig, LoraConfig, PRESETS, TARGETS } from './config';

type Preset = keyof typeof PRESETS;

const KNOBS: { field: keyof LoraConfig; help: Key; step?: number }[] = [
  { field: 'rank', help: 'helpRank' },
  { field: 'alpha', help: 'helpAlpha' },
  { field: 'dropout', help: 'helpDropout', step: 0.05 },
  { field: 'learning_rate', help: 'helpLearningRate', step: 0.0001 },
  { field: 'epochs', help: 'helpEpochs' },
  { field: 'max_steps', help: 'helpMaxSteps' },
  { field: 'batch_size', help: 'helpBatchSize' },
  { field: 'grad_accum', help: 'helpGradAccum' },
  { field: 'max_seq_len', help: 'helpMaxSeqLen' },
  { field: 'warmup_steps', help: 'helpWarmup' },
  { field: 'weight_decay', help: 'helpWeightDecay', step: 0.01 },
  { field: 'max_grad_norm', help: 'helpMaxGradNorm', step: 0.1 },
  { field: 'eval_split', help: 'helpEvalSplit', step: 0.05 },
  { field: 'eval_every', help: 'helpEvalEvery' },
  { field: 'checkpoint_every', help: 'helpCheckpointEvery' },
];

function CreateTask({ onCreated }: { onCreated: (id: string) => void }) {
  const { t, lang } = useI18n();
  const datasets = useDatasetsQuery({ status: 'valid', page_size: 100 });
  const [create, creating] = useCreateTaskMutation();
  const [preset, setPreset] = useState<Preset>('balanced');
  const [config, setConfig] = useState<LoraConfig>(PRESETS.balanced);
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const [form] = Form.useForm<{ name: string; base_model_id: string; dataset_id: string; dataset_version?: number; start: boolean }>();
  const problems = checkConfig(config);
  const serverField = errorField(failure)?.replace(/^config\./, '');
  const set = (field: keyof LoraConfig, value: unknown) => setConfig((c) => ({ ...c, [field]: value }));

  const submit = async (values: { name: string; base_model_id: string; dataset_id: string; dataset_version?: number; start: boolean }) => {
    if (Object.keys(problems).length) return;
    setFailure(null);
    try {
      const res = await create({ ...values, description: '', config: config as never, start: values.start }).unwrap();
      onCreated(res.id);
    } catch (e) {
      setFailure(e as ApiFailure);
    }
  };

  const fieldHelp = (field: string) => (serverField === field ? describeError(failure, lang) : undefined);
  return (
    <Form form={form} layout="vertical" onFinish={submit} initialValues={{ start: true }}>
      <Form.Item label={t('name')} name="name" rules={[{ required: true, message: t('required') }, { max: 200, message: t('tooLong') }]}
        validateStatus={serverField === 'name' ? 'error' : undefined} help={fieldHelp('name')}>
        <Input id="task-name" />
      </Form.Item>
      <Form.Item label={t('baseModel')} name="base_model_id" rules={[{ required: true, message: t('required') }]} extra={t('helpBaseModel')}
        validateStatus={serverField === 'base_model_id' ? 'error' : undefined} help={fieldHelp('base_model_id')}>
        <BaseModelSelect id="base-model" />
      </Form.Item>
      <Space align="start">
        <Form.Item label={t('dataset')} name="dataset_id" rules={[{ required: true, message: t('required') }]}>
          <Select style={{ width: 300 }} loading={datasets.isLoading} className="dataset-select" notFoundContent={t('noValidDatasets')}
            options={(datasets.data?.items ?? []).map((d) => ({ value: d.id, label: `${d.name} (v${d.version})` }))} />
        </Form.Item>
        <Form.Item label={t('version')} name="dataset_version" extra={t('latest')}>
          <InputNumber min={1} />
        </Form.Item>
      </Space>
      <Form.Item label={t('preset')}>
        <Segmented value={preset} onChange={(v) => { setPreset(v as Preset); setConfig(PRESETS[v as Preset]); }}
          options={(Object.keys(PRESETS) as Preset[]).map((p) => ({ value: p, label: t(`preset_${p}` as Key) }))} />
      </Form.Item>
      <Collapse
        items={[{
          key: 'advanced',
          label: t('advanced'),
          forceRender: true,
          children: (
            <div style={{ display: 'grid', gridTemplateColumns: 'repeat(3, 1fr)', gap: '0 16px' }}>
              {KNOBS.map(({ field, help, step }) => (
                <Form.Item key={field} label={field} tooltip={t(help)}
                  validateStatus={problems[field] || serverField === field ? 'error' : undefined}
                  help={problems[field] ?? fieldHelp(field)}>
                  <InputNumber style={{ width: '100%' }} step={step} value={config[field] as number | null} id={`cfg-${field}`}
                    onChange={(v) => set(field, v === null && field === 'max_steps' ? null : v ?? NaN)} />
                </Form.Item>
              ))}
              <Form.Item label="targets" tooltip={t('helpTargets')} validateStatus={problems.targets ? 'error' : undefined} help={problems.targets}>
                <Select mode="multiple" value={config.targets} onChange={(v) => set('targets', v)} options={TARGETS.map((x) => ({ value: x, label: x }))} />
              </Form.Item>
              <Form.Item label="device" tooltip={t('helpDevice')}>
                <Select value={config.device} onChange={(v) => set('device', v)} options={[{ value: 'cpu' }, { value: 'cuda' }]} />
              </Form.Item>
              <Form.Item label="merge" tooltip={t('helpMerge')}>
                <Switch checked={config.merge} onChange={(v) => set('merge', v)} />
              </Form.Item>
            </div>
          ),
        }]}
      />
      <Form.Item name="start" valuePropName="checked" label={t('startNow')} style={{ marginTop: 16 }}>
        <Switch />
      </Form.Item>
      {failure && <Alert type="error" showIcon role="alert" message={describeError(failure, lang)} style={{ marginBottom: 16 }} />}
      <Button type="primary" htmlType="submit" loading={creating.isLoading} disabled={!!Object.keys(problems).length}>{t('createTask')}</Button>
    </Form>
  );
}

export default function TrainingPage() {
  const { t } = useI18n();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const [status, setStatus] = useState<string | undefined>();
  const datasetId = params.get('dataset') ?? undefined;
  const [page, setPage] = useState(1);
  const [creating, setCreating] = useState(false);
  const datasets = useDatasetsQuery({ page_size: 100 });
  const { data, isLoading, error, refetch } = useTasksQuery({ status, dataset_id: datasetId, page, page_size: 20 }, { pollingInterval: 5000 });
  return (
    <Card
      title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuTraining')}</Typography.Title>}
      extra={
        <Space>
          <Select allowClear placeholder={t('dataset')} style={{ width: 220 }} value={datasetId} className="task-dataset-filter"
            onChange={(v?: string) => { setParams(v ? { dataset: v } : {}); setPage(1); }}
            options={(datasets.data?.items ?? []).map((d) => ({ value: d.id, label: d.name }))} />
          <Select allowClear placeholder={t('status')} style={{ width: 160 }} value={status} onChange={(v) => { setStatus(v); setPage(1); }}
            options={['created', 'queued', 'running', 'interrupted', 'stopping', 'stopped', 'completed', 'failed'].map((s) => ({ value: s, label: s }))} />
          <Button type="primary" onClick={() => setCreating(true)}>{t('newTraining')}</Button>
        </Space>
      }
    >
      <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!data?.items.length} emptyText={t('noTasks')}>
        <Table<Task>
          rowKey="id"
          dataSource={data?.items}
          pagination={{ current: page, total: data?.total, pageSize: 20, onChange: setPage }}
          columns={[
            { title: t('name'), dataIndex: 'name', render: (n: string, task) => <Link to={`/training/${task.id}`}>{n}</Link> },
            { title: t('status'), dataIndex: 'status', render: (s: string) => <Tag color={STATUS_COLOR[s]}>{s}</Tag> },
            { title: t('progress'), render: (_, task) => <Progress percent={Math.round(task.progress.fraction * 100)} size="small" style={{ width: 160 }} /> },
            { title: t('loss'), render: (_, task) => task.progress.loss?.toFixed(4) ?? '—' },
            { title: t('baseModel'), dataIndex: 'base_model_id' },
            { title: t('created'), dataIndex: 'created_at', render: when },
          ]}
        />
      </Loadable>
      <Drawer open={creating} onClose={() => setCreating(false)} title={t('newTraining')} width={760} destroyOnClose>
        <CreateTask onCreated={(id) => { setCreating(false); navigate(`/training/${id}`); }} />
      </Drawer>
    </Card>
  );
}
