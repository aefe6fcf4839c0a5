// Overview: counts, running trainings with their progress, recent alerts, deployed models (each part only
// for the roles that may see it).
import { Card, Progress, Statistic, Tag, Typography } from 'antd';
import { Link } from 'react-router-dom';
import { useAlertsQuery, useDatasetsQuery, useModelsQuery, useNodesQuery, useProfileQuery, useTasksQuery } from '../../api/api';
import { may } from '../../auth/session';
import { Loadable } from '../../components/States';
import { STATUS_COLOR, when } from '../../components/format';
import { useI18n } from '../../i18n';

// Plain grids and rows (not antd's Grid and List): this is the first page, kept light.
const GRID4 = { display: 'grid', gridTemplateColumns: 'repeat(4, 1fr)', gap: 16 };
const GRID2 = { display: 'grid', gridTemplateColumns: 'repeat(2, 1fr)', gap: 16 };
const ROW = { padding: '8px 0', borderBottom: '1px solid #f0f0f0' };

function TrainerOverview() {
  const { t } = useI18n();
  const datasets = useDatasetsQuery({ page_size: 1 });
  const running = useTasksQuery({ status: 'running', page_size: 10 }, { pollingInterval: 5000 });
  const tasks = useTasksQuery({ page_size: 1 });
  const deployed = useModelsQuery({ deployed: true, page_size: 10 });
  const alerts = useAlertsQuery({ status: 'active', page_size: 5 });
  return (
    <>
      <div style={GRID4}>
        <Card><Statistic title={t('menuDatasets')} value={datasets.data?.total ?? '—'} /></Card>
        <Card><Statistic title={t('trainingTasks')} value={tasks.data?.total ?? '—'} /></Card>
        <Card><Statistic title={t('deployedModels')} value={deployed.data?.total ?? '—'} /></Card>
        <Card><Statistic title={t('activeAlerts')} value={alerts.data?.total ?? '—'} /></Card>
      </div>
      <div style={{ ...GRID2, marginTop: 16 }}>
        <div>
          <Card title={t('runningTrainings')}>
            <Loadable loading={running.isLoading} error={running.error} empty={!running.data?.items.length} emptyText={t('noRunningTrainings')}>
              {(running.data?.items ?? []).map((task) => (
                <div key={task.id} style={ROW}>
                  <Link to={`/training/${task.id}`}>{task.name}</Link>
                  <Progress percent={Math.round(task.progress.fraction * 100)} size="small" />
                </div>
              ))}
            </Loadable>
          </Card>
        </div>
        <div>
          <Card title={t('recentAlerts')}>
            <Loadable loading={alerts.isLoading} error={alerts.error} empty={!alerts.data?.items.length} emptyText={t('noAlerts')}>
              {(alerts.data?.items ?? []).map((a) => (
                <div key={a.id} style={ROW}>
                  <Tag color={STATUS_COLOR[a.severity]}>{a.severity}</Tag> {a.message}
                </div>
              ))}
            </Loadable>
          </Card>
        </div>
      </div>
    </>
  );
}

/** The deployment's nodes and whether each holds its lease (admins). */
function Nodes() {
  const { t } = useI18n();
  const nodes = useNodesQuery(undefined, { pollingInterval: 10000 });
  return (
    <Card title={t('nodes')} style={{ marginTop: 16 }} data-testid="nodes">
      <Loadable loading={nodes.isLoading} error={nodes.error} empty={!nodes.data?.items.length} emptyText={t('noNodes')}>
        {(nodes.data?.items ?? []).map((n) => (
          <div key={n.name} style={ROW} data-testid="node">
            <Tag color={n.alive ? 'green' : 'red'}>{n.alive ? t('nodeAlive') : t('nodeGone')}</Tag>
            <Typography.Text code>{n.name}</Typography.Text> <Tag>{n.role}</Tag> {n.http_addr} · v{n.version} ·{' '}
            {t('nodeRenewed')} {when(n.renewed_at)}{n.name === nodes.data?.this_node ? ` · ${t('nodeThis')}` : ''}
          </div>
        ))}
      </Loadable>
    </Card>
  );
}

export default function OverviewPage() {
  const { t } = useI18n();
  const { data: me } = useProfileQuery();
  const models = useModelsQuery({ deployed: true, page_size: 10 });
  return (
    <div>
      <Typography.Title level={3}>{t('welcome', { name: me?.display_name || me?.username || '' })}</Typography.Title>
      {may(me?.role, 'training') && <TrainerOverview />}
      {may(me?.role, 'admin') && <Nodes />}
      <Card title={t('deployedModels')} style={{ marginTop: 16 }}>
        <Loadable loading={models.isLoading} error={models.error} empty={!models.data?.items.length} emptyText={t('noDeployedModels')}>
          {(models.data?.items ?? []).map((m) => (
            <div key={m.id} style={ROW}>
              {m.name} <Tag>v{m.version}</Tag> <Link to={`/chat?model=${m.id}`}>{t('askIt')}</Link>
            </div>
          ))}
        </Loadable>
      </Card>
    </div>
  );
}
