// The frame around every signed-in page: the menu (only what the role may open), the unread alert count,
// the language switch, the user menu with sign-out.
import { Suspense } from 'react';
import { BellOutlined } from '@ant-design/icons';
import { Badge, Button, Dropdown, Layout, Menu, Segmented, Space, Spin, Typography } from 'antd';
import { Link, Outlet, useLocation, useNavigate } from 'react-router-dom';
import { api, client, useAlertsQuery, useProfileQuery } from '../api/api';
import { loadTokens, saveTokens } from '../api/tokens';
import { Area, may } from '../auth/session';
import { useI18n } from '../i18n';
import type { Key } from '../i18n/messages';
import { store } from '../store';

const ITEMS: { path: string; area: Area; label: Key }[] = [
  { path: '/', area: 'overview', label: 'menuOverview' },
  { path: '/datasets', area: 'datasets', label: 'menuDatasets' },
  { path: '/training', area: 'training', label: 'menuTraining' },
  { path: '/models', area: 'models', label: 'menuModels' },
  { path: '/chat', area: 'chat', label: 'menuChat' },
  { path: '/alerts', area: 'alerts', label: 'menuAlerts' },
  { path: '/admin/users', area: 'admin', label: 'menuUsers' },
  { path: '/admin/audit', area: 'admin', label: 'menuAudit' },
];

export async function signOut() {
  const tokens = loadTokens();
  if (tokens) {
    try {
      await client.request({ url: '/api/auth/logout', method: 'POST', body: { refresh_token: tokens.refresh_token }, anonymous: true });
    } catch {
      // Signed out here whatever the server says.
    }
  }
  saveTokens(null);
  store.dispatch(api.util.resetApiState());
}

function AlertCount() {
  const { t } = useI18n();
  const { data } = useAlertsQuery({ status: 'active', page_size: 1 }, { pollingInterval: 30000 });
  return (
    <Link to="/alerts" aria-label={t('menuAlerts')}>
      <Badge count={data?.total ?? 0} size="small" data-testid="alert-count">
        <BellOutlined style={{ fontSize: 18 }} />
      </Badge>
    </Link>
  );
}

export default function Shell() {
  const { t, lang, setLang } = useI18n();
  const { data: me } = useProfileQuery();
  const location = useLocation();
  const navigate = useNavigate();
  const items = ITEMS.filter((i) => may(me?.role, i.area));
  const selected = items
    .map((i) => i.path)
    .filter((p) => (p === '/' ? location.pathname === '/' : location.pathname.startsWith(p)))
    .sort((a, b) => b.length - a.length)[0];

  return (
    <Layout style={{ minHeight: '100vh' }}>
      <Layout.Sider breakpoint="lg" collapsedWidth={0} theme="light" width={200}>
        <div style={{ padding: 16, fontWeight: 600, fontSize: 18 }} className="bonsai-logo"><img src="/favicon.svg" alt="" /> Bonsai</div>
        <nav data-testid="main-menu"><Menu
          mode="inline"
          selectedKeys={selected ? [selected] : []}
          items={items.map((i) => ({ key: i.path, label: <Link to={i.path}>{t(i.label)}</Link> }))}
        /></nav>
      </Layout.Sider>
      <Layout>
        <Layout.Header style={{ background: '#fff', display: 'flex', justifyContent: 'flex-end', alignItems: 'center', gap: 16, paddingInline: 24 }}>
          <Space size="large">
            {may(me?.role, 'alerts') && <AlertCount />}
            <Segmented size="small" value={lang} onChange={(v) => setLang(v as 'en' | 'zh')} options={[{ label: 'EN', value: 'en' }, { label: '中文', value: 'zh' }]} />
            <Dropdown
              menu={{
                items: [
                  { key: 'profile', label: t('menuProfile'), onClick: () => navigate('/profile') },
                  { key: 'out', label: t('signOut'), onClick: async () => { await signOut(); navigate('/sign-in'); } },
                ],
              }}
            >
              <Button type="text" data-testid="user-menu">
                <Typography.Text>{me ? `${me.display_name || me.username} · ${t(`role_${me.role}` as Key)}` : '…'}</Typography.Text>
              </Button>
            </Dropdown>
          </Space>
        </Layout.Header>
        <Layout.Content style={{ margin: 24 }}>
          <Suspense fallback={<Spin />}>
            <Outlet />
          </Suspense>
        </Layout.Content>
      </Layout>
    </Layout>
  );
}
