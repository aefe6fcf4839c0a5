// Models: versions grouped by name with their lineage (base model, training task), status and accuracy, the
// default model and the aliases; register one (from an installed base model; a finished training registers
// from its own page), test it (cases, a dataset or the held-out split), deploy, undeploy, roll back, make it
// the default. Each version opens its own page (lineage with the dataset version, accuracy history).
import { useMemo, useState } from 'react';
import { Button, Card, Collapse, Form, Input, Modal, Space, Table, Tag, Tooltip, Typography, message } from 'antd';
import { Link } from 'react-router-dom';
import {
  useDeployModelMutation, useMakeDefaultMutation, useModelsQuery, useRegisterModelMutation, useRollbackModelMutation, useRoutingQuery,
  useUndeployModelMutation,
} from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Model } from '../../api/types';
import { Loadable } from '../../components/States';
import { STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import { BaseModelSelect } from './BaseModelSelect';
import { TestModel, TestReport } from './TestModel';

export default function ModelsPage() {
  const { t, lang } = useI18n();
  const { data, isLoading, error, refetch } = useModelsQuery({ page_size: 100 }, { pollingInterval: 4000 });
  const routing = useRoutingQuery(undefined, { pollingInterval: 8000 });
  const [deploy] = useDeployModelMutation();
  const [undeploy] = useUndeployModelMutation();
  const [rollback] = useRollbackModelMutation();
  const [makeDefault] = useMakeDefaultMutation();
  const [register, registering] = useRegisterModelMutation();
  const [registerOpen, setRegisterOpen] = useState(false);
  const [testing, setTesting] = useState<Model | null>(null);
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  const groups = useMemo(() => {
    const by = new Map<string, Model[]>();
    for (const m of data?.items ?? []) by.set(m.name, [...(by.get(m.name) ?? []), m]);
    return Array.from(by.entries()).map(([name, versions]) => ({ name, versions: versions.sort((a, b) => b.version - a.version) }));
  }, [data]);
  const byId = useMemo(() => new Map((data?.items ?? []).map((m) => [m.id, m])), [data]);
  const label = (id?: string | null) => {
    const m = id ? byId.get(id) : undefined;
    return m ? `${m.name} v${m.version}` : id ? id.slice(0, 8) : '—';
  };
  const aliasesOf = (id: string) => Object.entries((routing.data?.aliases ?? {}) as Record<string, string>).filter(([, target]) => target === id).map(([a]) => a);
  const defaultId = routing.data?.default_model_id;

  return (
    <Card title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuModels')}</Typography.Title>}
      extra={<Space>
        <Typography.Text type="secondary" data-testid="default-model">{t('defaultModel')}: {label(defaultId)}</Typography.Text>
        <Button type="primary" onClick={() => setRegisterOpen(true)}>{t('registerModel')}</Button>
      </Space>}>
      <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!groups.length} emptyText={t('noModels')}>
        <Collapse defaultActiveKey={groups.map((g) => g.name)}
          items={groups.map((g) => ({
            key: g.name,
            label: <Space><b data-testid="model-group">{g.name}</b><Tag>{g.versions.length} {t('versions')}</Tag>{g.versions.some((v) => v.deployed) && <Tag color="green">{t('deployed')}</Tag>}</Space>,
            children: (
              <Table<Model> size="small" rowKey="id" dataSource={g.versions} pagination={false}
                expandable={{ expandedRowRender: (m) => <TestReport model={m} /> }}
                columns={[
                  { title: t('version'), dataIndex: 'version', render: (v: number, m) => <Link to={`/models/${m.id}`} data-testid="model-link">v{v}</Link> },
                  { title: t('status'), dataIndex: 'status', render: (s: string, m) => (
                    <Space size={4} wrap>
                      <Tag color={STATUS_COLOR[s]} data-testid="model-status">{s}</Tag>
                      {m.deployed && <Tag color="green">{t('deployed')}</Tag>}
                      {m.id === defaultId && <Tag color="gold">{t('defaultModel')}</Tag>}
                      {aliasesOf(m.id).map((a) => <Tag key={a} color="purple">{a}</Tag>)}
                    </Space>
                  ) },
                  { title: t('lineage'), render: (_, m) => (
                    <span>{m.base_model_id}{m.training_task_id && <> ← <Link to={`/training/${m.training_task_id}`}>{t('training')}</Link></>}</span>
                  ) },
                  { title: t('accuracy'), dataIndex: 'accuracy', render: (a?: number | null) => <span data-testid="model-accuracy">{a == null ? '—' : `${(a * 100).toFixed(1)}%`}</span> },
                  { title: t('created'), dataIndex: 'created_at', render: when },
                  { title: '', render: (_, m) => (
                    <Space wrap>
                      {!m.deployed && <Button size="small" type="primary" disabled={m.status !== 'ready'} onClick={() => deploy(m.id).unwrap().then(() => message.success(t('deployedOk'))).catch(fail)}>{t('deploy')}</Button>}
                      {m.deployed && <Button size="small" onClick={() => undeploy(m.id).unwrap().catch(fail)}>{t('undeploy')}</Button>}
                      {m.deployed && g.versions.length > 1 && (
                        <Tooltip title={t('rollBackHelp')}><Button size="small" onClick={() => rollback(m.id).unwrap().then(() => message.success(t('rolledBack'))).catch(fail)}>{t('rollBack')}</Button></Tooltip>
                      )}
                      {m.deployed && m.id !== defaultId && <Button size="small" onClick={() => makeDefault(m.id).unwrap().catch(fail)}>{t('makeDefault')}</Button>}
                      <Button size="small" disabled={m.status !== 'ready'} onClick={() => setTesting(m)}>{t('test')}</Button>
                    </Space>
                  ) },
                ]} />
            ),
          }))} />
      </Loadable>
      <Modal open={registerOpen} title={t('registerModel')} onCancel={() => setRegisterOpen(false)} footer={null} destroyOnClose>
        <Form layout="vertical"
          onFinish={(v: { name: string; base_model_id: string }) => register(v).unwrap().then(() => setRegisterOpen(false)).catch(fail)}>
          <Form.Item label={t('modelName')} name="name" rules={[{ required: true, message: t('required') }, { max: 100, message: t('tooLong') }]}><Input id="register-name" /></Form.Item>
          <Form.Item label={t('baseModel')} name="base_model_id" extra={t('registerFromTaskHint')} rules={[{ required: true, message: t('required') }]}>
            <BaseModelSelect id="register-base" />
          </Form.Item>
          <Button type="primary" htmlType="submit" loading={registering.isLoading}>{t('register')}</Button>
        </Form>
      </Modal>
      <Modal open={!!testing} title={`${t('test')} ${testing?.name ?? ''} v${testing?.version ?? ''}`} onCancel={() => setTesting(null)} footer={null} destroyOnClose width={640}>
        {testing && <TestModel model={testing} onDone={() => { setTesting(null); message.success(t('testStarted')); }} />}
      </Modal>
    </Card>
  );
}
