// The routes: sign-in outside the shell, every other page inside it, each page its own chunk (loaded when
// first opened), each guarded by the role that may open it.
import { lazy, ReactNode, Suspense, useEffect } from 'react';
import { BrowserRouter, Navigate, Route, Routes, useLocation, useNavigate } from 'react-router-dom';
import { Spin } from 'antd';
import { Area, may, useSignedIn } from './auth/session';
import { setSessionLostHandler, useProfileQuery } from './api/api';
import { ErrorState } from './components/States';

// The frame and the sign-in page are chunks of their own too: the entry holds only the router and the store.
const Shell = lazy(() => import('./layout/Shell'));
const SignIn = lazy(() => import('./auth/SignIn'));
const NotAllowed = lazy(() => import('./components/NotAllowed'));
const NotFound = lazy(() => import('./components/NotFound'));
const Overview = lazy(() => import('./features/overview/OverviewPage'));
const Datasets = lazy(() => import('./features/datasets/DatasetsPage'));
const DatasetDetail = lazy(() => import('./features/datasets/DatasetPage'));
const Training = lazy(() => import('./features/training/TrainingPage'));
const TaskDetail = lazy(() => import('./features/training/TaskPage'));
const Models = lazy(() => import('./features/models/ModelsPage'));
const ModelDetail = lazy(() => import('./features/models/ModelPage'));
const Chat = lazy(() => import('./features/chat/ChatPage'));
const Alerts = lazy(() => import('./features/alerts/AlertsPage'));
const Users = lazy(() => import('./features/admin/UsersPage'));
const Audit = lazy(() => import('./features/admin/AuditPage'));
const Profile = lazy(() => import('./features/profile/ProfilePage'));

export const Loading = () => (
  <div style={{ padding: 48, textAlign: 'center' }}>
    <Spin />
  </div>
);

/** Sends a lost session to sign-in, remembering where it was. */
function SessionLostRedirect() {
  const navigate = useNavigate();
  useEffect(() => {
    setSessionLostHandler((returnTo) => navigate(`/sign-in?next=${encodeURIComponent(returnTo)}`, { replace: true }));
  }, [navigate]);
  return null;
}

function RequireSignIn({ children }: { children: ReactNode }) {
  const signedIn = useSignedIn();
  const location = useLocation();
  if (!signedIn) return <Navigate to={`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  return <>{children}</>;
}

function Guard({ area, children }: { area: Area; children: ReactNode }) {
  const { data: me, isLoading, error, refetch } = useProfileQuery();
  if (error && !me) return <ErrorState error={error} onRetry={refetch} />;
  if (isLoading || !me) return <Loading />;
  return <Suspense fallback={<Loading />}>{may(me.role, area) ? children : <NotAllowed />}</Suspense>;
}

export function App() {
  return (
    <BrowserRouter>
      <SessionLostRedirect />
      <Routes>
        <Route path="/sign-in" element={<Suspense fallback={<Loading />}><SignIn /></Suspense>} />
        <Route
          element={
            <RequireSignIn>
              <Suspense fallback={<Loading />}>
                <Shell />
              </Suspense>
            </RequireSignIn>
          }
        >
          <Route index element={<Guard area="overview"><Overview /></Guard>} />
          <Route path="datasets" element={<Guard area="datasets"><Datasets /></Guard>} />
          <Route path="datasets/:id" element={<Guard area="datasets"><DatasetDetail /></Guard>} />
          <Route path="training" element={<Guard area="training"><Training /></Guard>} />
          <Route path="training/:id" element={<Guard area="training"><TaskDetail /></Guard>} />
          <Route path="models" element={<Guard area="models"><Models /></Guard>} />
          <Route path="models/:id" element={<Guard area="models"><ModelDetail /></Guard>} />
          <Route path="chat" element={<Guard area="chat"><Chat /></Guard>} />
          <Route path="alerts" element={<Guard area="alerts"><Alerts /></Guard>} />
          <Route path="admin/users" element={<Guard area="admin"><Users /></Guard>} />
          <Route path="admin/audit" element={<Guard area="admin"><Audit /></Guard>} />
          <Route path="profile" element={<Guard area="profile"><Profile /></Guard>} />
          <Route path="*" element={<Suspense fallback={<Loading />}><NotFound /></Suspense>} />
        </Route>
      </Routes>
    </BrowserRouter>
  );
}
