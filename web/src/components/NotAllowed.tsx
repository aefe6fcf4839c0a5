// The page a role may not open (a deep link past the menu): says so instead of failing half-way.
import { Button, Result } from 'antd';
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n';

export default function NotAllowed() {
  const { t } = useI18n();
  return (
    <div data-testid="not-allowed">
      <Result status="403" title={t('notAllowed')} subTitle={t('notAllowedHint')}
        extra={<Link to="/"><Button type="primary">{t('backHome')}</Button></Link>} />
    </div>
  );
}
