// The shared loading / empty / error states every page uses.
import { Alert, Button, Empty, Spin } from 'antd';
import type { ApiFailure } from '../api/baseQuery';
import { describeError } from '../api/errors';
import { useI18n } from '../i18n';

export function ErrorState({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const { t, lang } = useI18n();
  return (
    <Alert
      type="error"
      showIcon
      message={t('loadFailed')}
      description={describeError(error as ApiFailure, lang)}
      action={onRetry ? <Button size="small" onClick={onRetry}>{t('retry')}</Button> : undefined}
      role="alert"
    />
  );
}

/** Loading, error or empty, else the children. */
export function Loadable({
  loading,
  error,
  empty,
  onRetry,
  emptyText,
  children,
}: {
  loading: boolean;
  error?: unknown;
  empty?: boolean;
  onRetry?: () => void;
  emptyText?: string;
  children: React.ReactNode;
}) {
  const { t } = useI18n();
  if (loading) return <div style={{ padding: 32, textAlign: 'center' }}><Spin /></div>;
  if (error) return <ErrorState error={error} onRetry={onRetry} />;
  if (empty) return <Empty description={emptyText ?? t('nothingYet')} />;
  return <>{children}</>;
}
