// One model: its lineage (base model, the training task, the dataset and the version it trained on), its
// accuracy over every test of every version of its name, the last test's report, and what can be done with
// it (deploy, undeploy, roll back, make default, name it by an alias, test it).
import { useEffect, useMemo, useState } from 'react';
import { Alert, Button, Card, Descriptions, Input, Modal, Space, Tag, Tooltip, Typography, message } from 'antd';
import { Link, useParams } from 'react-router-dom';
import {
  client, useBaseModelsQuery, useDatasetQuery, useDeployModelMutation, useMakeDefaultMutation, useModelQuery, useModelsQuery,
  useProfileQuery, useRollbackModelMutation, useRemoveAliasMutation, useRoutingQuery, useSetAliasMutation, useTaskQuery, useUndeployModelMutation,
} from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { AuditEvent, Model } from '../../api/types';
import { Loadable } from '../../components/States';
import { duration, STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import { AccuracyChart } from './AccuracyChart';
import { accuracyHistory } from './accuracy';
import { baseModelSummary } from './BaseModelSelect';
import { TestModel, TestReport } from './TestModel';

/** Each version's audit history (its every test), where the audit log may be read; refreshed after a test. */
function useTestEvents(versions: Model[], enabled: boolean): Record<string, AuditEvent[] | undefined> {
  const [events, setEvents] = useState<Record<string, AuditEvent[] | undefined>>({});
  const key = versions.map((v) => `${v.id}@${v.tested_at ?? ''}`).join(',');
  useEffect(() => {
    // The ids come from `key` (the versions and their latest tests), so a new test reads them again.
    const ids = key ? key.split(',').map((entry) => entry.split('@')[0]) : [];
    if (!enabled || !ids.length) return;
    let cancelled = false;
    Promise.all(ids.map((id) => client.request<AuditEvent[]>({ url: `/api/audit/Model/${id}` }).then((e) => [id, e] as const).catch(() => [id, undefined] as const)))
      .then((all) => !cancelled && setEvents(Object.fromEntries(all)));
    return () => {
      cancelled = true;
    };
  }, [key, enabled]);
  return events;
}

function Lineage({ model }: { model: Model }) {
  const { t } = useI18n();
  const bases = useBaseModelsQuery();
  const task = useTaskQuery(model.training_task_id ?? '', { skip: !model.training_task_id });
  const dataset = useDatasetQuery(task.data?.dataset_id ?? '', { skip: !task.data });
  const base = bases.data?.items.find((b) => b.id === model.base_model_id);
  const source = model.source as { kind?: string; model_id?: string };
  const metrics = model.metrics as Record<string, unknown>;
  const metric = (k: string) => (typeof metrics[k] === 'number' ? (metrics[k] as number) : undefined);
  return (
    <Descriptions size="small" column={1} bordered data-testid="lineage">
      <Descriptions.Item label={t('baseModel')}>
        <span data-testid="lineage-base">{model.base_model_id}</span>{' '}
        {base ? <Typography.Text type="secondary">{baseModelSummary(base)}</Typography.Text> : bases.data && <Tag>{t('notInstalled')}</Tag>}
      </Descriptions.Item>
      <Descriptions.Item label={t('trainingTask')}>
        {model.training_task_id ? (
          <Link to={`/training/${model.training_task_id}`} data-testid="lineage-task">{task.data?.name ?? model.training_task_id.slice(0, 8)}</Link>
        ) : (
          <Typography.Text type="secondary">{source.kind === 'installed' ? t('fromInstalled') : '—'}</Typography.Text>
        )}
      </Descriptions.Item>
      {model.training_task_id && (
        <Descriptions.Item label={t('datasetVersion')}>
          {task.data ? (
            <span data-testid="lineage-dataset">
              <Link to={`/datasets/${task.data.dataset_id}`}>{dataset.data?.name ?? task.data.dataset_id.slice(0, 8)}</Link>{' '}
              <Tag data-testid="lineage-dataset-version">v{task.data.dataset_version}</Tag>
              {dataset.data && dataset.data.version !== task.data.dataset_version && (
                <Typography.Text type="secondary">{t('datasetNowAt', { v: dataset.data.version })}</Typography.Text>
              )}
            </span>
          ) : task.error ? <Typography.Text type="secondary">{t('taskUnavailable')}</Typography.Text> : '…'}
        </Descriptions.Item>
      )}
      {model.training_task_id && (
        <Descriptions.Item label={t('trainingResult')}>
          <Space size="large" wrap>
            <span>{t('finalLoss')}: {metric('final_loss')?.toFixed(4) ?? '—'}</span>
            <span>{t('bestEvalLoss')}: {metric('best_eval_loss')?.toFixed(4) ?? '—'}</span>
            <span>{t('step')}: {metric('steps') ?? '—'}</span>
            <span>{t('duration')}: {duration(metric('duration_secs'))}</span>
          </Space>
        </Descriptions.Item>
      )}
      <Descriptions.Item label={t('exportTime')}>{model.export_secs != null ? `${model.export_secs.toFixed(1)} s` : '—'}</Descriptions.Item>
    </Descriptions>
  );
}

export default function ModelPage() {
  const { id = '' } = useParams();
  const { t, lang } = useI18n();
  const me = useProfileQuery();
  const model = useModelQuery(id, { pollingInterval: 4000 });
  const versions = useModelsQuery({ name: model.data?.name, page_size: 100 }, { skip: !model.data, pollingInterval: 8000 });
  const routing = useRoutingQuery();
  const [deploy] = useDeployModelMutation();
  const [undeploy] = useUndeployModelMutation();
  const [rollback] = useRollbackModelMutation();
  const [makeDefault] = useMakeDefaultMutation();
  const [setAlias, settingAlias] = useSetAliasMutation();
  const [removeAlias] = useRemoveAliasMutation();
  const [alias, setAliasText] = useState('');
  const [testing, setTesting] = useState(false);
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  const sameName = useMemo(() => (versions.data?.items ?? []).filter((v) => v.name === model.data?.name), [versions.data, model.data?.name]);
  const events = useTestEvents(sameName, me.data?.role === 'admin');
  const history = useMemo(() => accuracyHistory(sameName.length ? sameName : model.data ? [model.data] : [], events), [sameName, model.data, events]);
  const m = model.data;
  const aliases = Object.entries((routing.data?.aliases ?? {}) as Record<string, string>).filter(([, target]) => target === id).map(([a]) => a);
  const isDefault = routing.data?.default_model_id === id;

  return (
    <Loadable loading={model.isLoading} error={model.error} onRetry={model.refetch}>
      {m && (
        <Space direction="vertical" style={{ width: '100%' }} size="large">
          <Card
            title={
              <Space wrap>
                <Typography.Title level={4} style={{ margin: 0 }} data-testid="model-name">{m.name}</Typography.Title>
                <Tag>v{m.version}</Tag>
                <Tag color={STATUS_COLOR[m.status]} data-testid="model-status">{m.status}</Tag>
                {m.deployed && <Tag color="green">{t('deployed')}</Tag>}
                {isDefault && <Tag color="gold" data-testid="default-tag">{t('defaultModel')}</Tag>}
                {aliases.map((a) => (
                  <Tag key={a} color="purple" closable data-testid={`alias-${a}`}
                    onClose={(e) => { e.preventDefault(); removeAlias({ id: m.id, alias: a }).unwrap().then(() => void routing.refetch()).catch(fail); }}>
                    {a}
                  </Tag>
                ))}
              </Space>
            }
            extra={
              <Space wrap>
                {!m.deployed && <Button type="primary" disabled={m.status !== 'ready'} onClick={() => deploy(m.id).unwrap().then(() => message.success(t('deployedOk'))).catch(fail)}>{t('deploy')}</Button>}
                {m.deployed && <Button onClick={() => undeploy(m.id).unwrap().catch(fail)}>{t('undeploy')}</Button>}
                {m.deployed && sameName.length > 1 && (
                  <Tooltip title={t('rollBackHelp')}><Button onClick={() => rollback(m.id).unwrap().then(() => message.success(t('rolledBack'))).catch(fail)}>{t('rollBack')}</Button></Tooltip>
                )}
                {m.deployed && !isDefault && <Button onClick={() => makeDefault(m.id).unwrap().catch(fail)}>{t('makeDefault')}</Button>}
                <Button disabled={m.status !== 'ready'} onClick={() => setTesting(true)}>{t('test')}</Button>
              </Space>
            }
          >
            {m.error && <Alert type="error" showIcon message={String((m.error as Record<string, unknown>).message ?? (m.error as Record<string, unknown>).code)} style={{ marginBottom: 16 }} />}
            <Lineage model={m} />
            <Space style={{ marginTop: 16 }} wrap>
              <Input placeholder={t('aliasPlaceholder')} value={alias} onChange={(e) => setAliasText(e.target.value.trim())} style={{ width: 220 }} maxLength={64} id="alias-input" />
              <Button disabled={!alias || m.status !== 'ready'} loading={settingAlias.isLoading}
                onClick={() => setAlias({ id: m.id, alias }).unwrap().then(() => { setAliasText(''); void routing.refetch(); }).catch(fail)}>{t('setAlias')}</Button>
              <Typography.Text type="secondary">{t('created')} {when(m.created_at)} · {t('deployedAt')} {when(m.deployed_at)}</Typography.Text>
              {me.data?.role === 'admin' && <Link to={`/admin/audit?type=Model&id=${m.id}`} data-testid="model-audit-link">{t('auditTimeline')}</Link>}
            </Space>
          </Card>
          <Card title={t('accuracyHistory')} extra={<Typography.Text type="secondary">{me.data?.role === 'admin' ? t('accuracyEveryTest') : t('accuracyLatestTests')}</Typography.Text>}>
            <AccuracyChart points={history} current={m.id} emptyText={t('noTestYet')} />
          </Card>
          <Card title={`${t('lastTest')}${m.tested_at ? ` · ${when(m.tested_at)}` : ''}`}
            extra={m.accuracy != null && <Typography.Text strong data-testid="model-accuracy">{(m.accuracy * 100).toFixed(1)}%</Typography.Text>}>
            <TestReport model={m} />
          </Card>
          <Modal open={testing} title={`${t('test')} ${m.name} v${m.version}`} onCancel={() => setTesting(false)} footer={null} destroyOnClose width={640}>
            <TestModel model={m} onDone={() => { setTesting(false); message.success(t('testStarted')); }} />
          </Modal>
        </Space>
      )}
    </Loadable>
  );
}
