// One training task: the loss and eval-loss chart (the whole curve so far from /progress, then live from the
// task's WebSocket, reconnecting when it drops), the progress bar with ETA and tokens/s, stop and resume,
// adapter download, "register as model", and other runs' curves on the same chart for comparison.
import { useEffect, useMemo, useRef, useState } from 'react';
import { Alert, Button, Card, Descriptions, Form, Input, Modal, Progress, Select, Space, Statistic, Table, Tag, Typography, message } from 'antd';
import { Link, useNavigate, useParams } from 'react-router-dom';
import {
  api, client, useCheckpointsQuery, useDatasetQuery, useProgressQuery, useRegisterModelMutation, useStartTaskMutation, useStopTaskMutation, useTaskQuery, useTasksQuery,
} from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import { loadTokens } from '../../api/tokens';
import type { ProgressPoint, ProgressReport } from '../../api/types';
import { Loadable } from '../../components/States';
import { duration, STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';
import { store } from '../../store';
import { lossSeries } from './downsample';
import { LossChart, Series } from './LossChart';

type Live = Pick<ProgressPoint, 'step' | 'loss' | 'eval_loss' | 'total_steps' | 'tokens_per_sec' | 'eta_secs' | 'epoch' | 'learning_rate'>;
const FINAL = ['TrainingCompleted', 'TrainingFailed', 'TrainingStopped'];
const OVER = ['completed', 'failed', 'stopped'];
const COMPARE_COLORS = ['#1677ff', '#722ed1', '#eb2f96', '#fa8c16'];

/** The task's live feed: progress points as they come, reconnecting until the run is over. */
function useLiveFeed(id: string, active: boolean, onFinal: () => void): Live[] {
  const [points, setPoints] = useState<Live[]>([]);
  const finalRef = useRef(onFinal);
  finalRef.current = onFinal;
  useEffect(() => {
    if (!active) return;
    let socket: WebSocket | null = null;
    let closed = false;
    let over = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const connect = () => {
      const token = loadTokens()?.access_token ?? '';
      const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
      socket = new WebSocket(`${scheme}://${window.location.host}/api/training/tasks/${id}/ws?access_token=${encodeURIComponent(token)}`);
      socket.onmessage = (m) => {
        const msg = JSON.parse(String(m.data)) as {
          type: string;
          task?: { status: string };
          event?: { payload?: Record<string, { metrics?: Live }> };
        };
        const metrics = msg.event?.payload?.TrainingProgressed?.metrics;
        if (metrics) setPoints((p) => [...p, metrics]);
        if (FINAL.includes(msg.type) || (msg.type === 'snapshot' && OVER.includes(msg.task?.status ?? ''))) {
          over = true;
          finalRef.current();
        }
      };
      socket.onclose = (e) => {
        if (closed || over) return;
        // The server closes the feed when the run ends (1000, or 1005: a close without a code); anything else
        // is a dropped connection (or an expired token: a call through the API refreshes it), so try again.
        if (e.code === 1000 || e.code === 1005) {
          finalRef.current();
          return;
        }
        retry = setTimeout(() => {
          void client.request({ url: '/api/users/profile' }).catch(() => undefined).finally(() => !closed && connect());
        }, 2000);
      };
    };
    connect();
    return () => {
      closed = true;
      if (retry) clearTimeout(retry);
      socket?.close();
    };
  }, [id, active]);
  return points;
}

function Compare({ ids, onData }: { ids: string[]; onData: (series: Series[]) => void }) {
  useEffect(() => {
    let cancelled = false;
    Promise.all(ids.map((tid) => client.request<ProgressReport>({ url: `/api/training/tasks/${tid}/progress` }).then((r) => [tid, r] as const)))
      .then((reports) => {
        if (cancelled) return;
        onData(reports.map(([tid, r], i) => ({ name: `${tid.slice(0, 8)} loss`, color: COMPARE_COLORS[i % COMPARE_COLORS.length], points: lossSeries(r.history).loss, dashed: true })));
      })
      .catch(() => onData([]));
    return () => {
      cancelled = true;
    };
  }, [ids, onData]);
  return null;
}

async function download(id: string, file: string) {
  const token = loadTokens()?.access_token;
  const res = await fetch(`/api/training/tasks/${id}/adapter/${file}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!res.ok) throw new Error(`${res.status}`);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = file;
  document.body.appendChild(a);
  a.click();
  a.remove();
  // Revoked once the browser has taken the file (revoking at once can cancel the download).
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}

export default function TaskPage() {
  const { id = '' } = useParams();
  const { t, lang } = useI18n();
  const navigate = useNavigate();
  const [taskPoll, setTaskPoll] = useState(3000);
  const task = useTaskQuery(id, { pollingInterval: taskPoll });
  const progress = useProgressQuery(id);
  const others = useTasksQuery({ page_size: 50 });
  const dataset = useDatasetQuery(task.data?.dataset_id ?? '', { skip: !task.data });
  const [stop, stopping] = useStopTaskMutation();
  const [start, starting] = useStartTaskMutation();
  const [register, registering] = useRegisterModelMutation();
  const [registerOpen, setRegisterOpen] = useState(false);
  // The checkpoint being registered as a model (none: the completed run).
  const [registerStep, setRegisterStep] = useState<number | undefined>(undefined);
  const checkpoints = useCheckpointsQuery(id);
  const [compareIds, setCompareIds] = useState<string[]>([]);
  const [compared, setCompared] = useState<Series[]>([]);
  const status = task.data?.status;
  // An interrupted run waits for another worker to resume it: it can be stopped, and is followed meanwhile.
  const running = status === 'running' || status === 'queued' || status === 'interrupted';
  // A stopping run is still under way (it pauses at the next step): keep following it until it has stopped.
  const live = running || status === 'stopping';
  if (status && live !== taskPoll > 0) setTaskPoll(live ? 3000 : 0);
  const refresh = () => {
    store.dispatch(api.util.invalidateTags(['Tasks']));
    void progress.refetch();
  };
  const points = useLiveFeed(id, live, refresh);

  const { history, latest } = useMemo(() => {
    const base = progress.data?.history ?? [];
    const last = base.length ? base[base.length - 1].step : -1;
    const extra = points.filter((p) => p.step > last);
    const all = [...base, ...extra];
    return { history: all, latest: all[all.length - 1] as Live | undefined };
  }, [progress.data, points]);
  const series = useMemo(() => {
    const { loss, evalLoss } = lossSeries(history);
    const s: Series[] = [{ name: t('loss'), color: '#389e0d', points: loss }];
    if (evalLoss.length) s.push({ name: t('evalLoss'), color: '#d4380d', points: evalLoss });
    return [...s, ...compared];
  }, [history, compared, t]);

  const fraction = status === 'completed' ? 1 : latest?.total_steps ? latest.step / latest.total_steps : task.data?.progress.fraction ?? 0;
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  const result = (task.data?.result ?? null) as Record<string, unknown> | null;
  const error = (task.data?.error ?? null) as Record<string, unknown> | null;
  const warnings = (Array.isArray(result?.warnings) ? result.warnings : []) as { code: string; message: string }[];

  return (
    <Loadable loading={task.isLoading} error={task.error} onRetry={task.refetch}>
      {task.data && (
        <Space direction="vertical" style={{ width: '100%' }} size="large">
          <Card
            title={<Space><Typography.Title level={4} style={{ margin: 0 }} data-testid="task-name">{task.data.name}</Typography.Title><Tag color={STATUS_COLOR[task.data.status]} data-testid="task-status">{task.data.status}</Tag></Space>}
            extra={
              <Space>
                {running && <Button loading={stopping.isLoading} onClick={() => stop(id).unwrap().catch(fail)}>{t('stop')}</Button>}
                {(status === 'stopped' || status === 'failed') && <Button loading={starting.isLoading} onClick={() => start(id).unwrap().then(refresh).catch(fail)}>{t('resume')}</Button>}
                {status === 'completed' && (
                  <>
                    <Button onClick={() => download(id, 'adapter_model.safetensors').catch(() => message.error(t('downloadFailed')))}>{t('downloadAdapter')}</Button>
                    <Button onClick={() => download(id, 'adapter_config.json').catch(() => message.error(t('downloadFailed')))}>adapter_config.json</Button>
                    <Button type="primary" onClick={() => { setRegisterStep(undefined); setRegisterOpen(true); }}>{t('registerAsModel')}</Button>
                  </>
                )}
              </Space>
            }
          >
            {error && <Alert type="error" showIcon message={String(error.message ?? error.code ?? JSON.stringify(error))} style={{ marginBottom: 16 }} />}
            {status === 'interrupted' && <Alert type="warning" showIcon message={t('interruptedRun')} style={{ marginBottom: 16 }} data-testid="task-interrupted" />}
            {warnings.map((w) => <Alert key={w.code} type="warning" showIcon message={w.message} style={{ marginBottom: 16 }} data-testid="task-warning" />)}
            <Progress percent={Math.round(fraction * 1000) / 10} status={status === 'failed' ? 'exception' : running ? 'active' : undefined} data-testid="task-progress" />
            <Space size="large" wrap style={{ marginTop: 8 }}>
              <Statistic title={t('step')} value={latest ? `${latest.step} / ${latest.total_steps ?? '?'}` : '—'} />
              <Statistic title={t('loss')} value={latest?.loss != null ? latest.loss.toFixed(4) : '—'} />
              <Statistic title={t('evalLoss')} value={latest?.eval_loss != null ? latest.eval_loss.toFixed(4) : '—'} />
              <Statistic title={t('tokensPerSec')} value={latest?.tokens_per_sec != null ? Math.round(latest.tokens_per_sec) : '—'} />
              <Statistic title={t('eta')} value={running ? duration(latest?.eta_secs) : '—'} />
            </Space>
          </Card>
          <Card title={t('lossCurve')} extra={
            <Select mode="multiple" placeholder={t('compareWith')} style={{ minWidth: 260 }} value={compareIds} onChange={setCompareIds}
              options={(others.data?.items ?? []).filter((o) => o.id !== id).map((o) => ({ value: o.id, label: o.name }))} />
          }>
            {compareIds.length > 0 && <Compare ids={compareIds} onData={setCompared} />}
            <Loadable loading={progress.isLoading} error={progress.error}>
              <LossChart series={series} emptyText={running ? t('waitingForFirstStep') : t('noProgress')} />
            </Loadable>
          </Card>
          <Card title={t('details')}>
            <Descriptions size="small" column={2} bordered>
              <Descriptions.Item label={t('baseModel')}>{task.data.base_model_id}</Descriptions.Item>
              <Descriptions.Item label={t('dataset')}><Link to={`/datasets/${task.data.dataset_id}`} data-testid="task-dataset">{dataset.data?.name ?? `${task.data.dataset_id.slice(0, 8)}…`}</Link> <Tag>v{task.data.dataset_version}</Tag></Descriptions.Item>
              <Descriptions.Item label={t('attempt')}>{task.data.attempt}</Descriptions.Item>
              <Descriptions.Item label={t('created')}>{when(task.data.created_at)}</Descriptions.Item>
              <Descriptions.Item label={t('config')} span={2}><Typography.Text code>{JSON.stringify(task.data.config)}</Typography.Text></Descriptions.Item>
              {result && <Descriptions.Item label={t('result')} span={2}><Typography.Text code>{JSON.stringify(result)}</Typography.Text></Descriptions.Item>}
            </Descriptions>
          </Card>
          {(checkpoints.data?.items.length ?? 0) > 0 && (
            <Card title={t('checkpoints')} data-testid="task-checkpoints">
              <Table size="small" rowKey="step" pagination={false} dataSource={checkpoints.data?.items ?? []}
                columns={[
                  { title: t('step'), dataIndex: 'step' },
                  { title: t('loss'), dataIndex: 'train_loss', render: (v?: number | null) => (v != null ? v.toFixed(4) : '—') },
                  { title: t('evalLoss'), dataIndex: 'eval_loss', render: (v?: number | null) => (v != null ? v.toFixed(4) : '—') },
                  { title: t('size'), dataIndex: 'size_bytes', render: (v: number) => `${(v / 1048576).toFixed(1)} MB` },
                  { title: t('created'), dataIndex: 'created_at', render: (v: string) => when(v) },
                  {
                    title: '', key: 'register',
                    render: (_: unknown, c: { step: number }) => (
                      <Button size="small" data-testid={`register-checkpoint-${c.step}`} onClick={() => { setRegisterStep(c.step); setRegisterOpen(true); }}>
                        {t('registerAsModel')}
                      </Button>
                    ),
                  },
                ]} />
            </Card>
          )}
          <Modal open={registerOpen} title={registerStep != null ? `${t('registerAsModel')} (${t('step')} ${registerStep})` : t('registerAsModel')}
            onCancel={() => setRegisterOpen(false)} footer={null} destroyOnClose>
            <Form layout="vertical" initialValues={{ name: registerStep != null ? `${task.data.name} @${registerStep}`.slice(0, 100) : task.data.name }}
              onFinish={(v: { name: string }) => register({ name: v.name, training_task_id: id, checkpoint_step: registerStep }).unwrap().then(() => navigate('/models')).catch(fail)}>
              <Form.Item label={t('modelName')} name="name" rules={[{ required: true, message: t('required') }, { max: 100, message: t('tooLong') }]}><Input id="model-name" /></Form.Item>
              <Button type="primary" htmlType="submit" loading={registering.isLoading}>{t('register')}</Button>
            </Form>
          </Modal>
        </Space>
      )}
    </Loadable>
  );
}
