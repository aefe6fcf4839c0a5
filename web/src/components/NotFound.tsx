// The page for an address the console does not know.
import { Button, Result } from 'antd';
import { Link } from 'react-router-dom';
import { useI18n } from '../i18n';

export default function NotFound() {
  const { t } = useI18n();
  return <Result status="404" title={t('notFound')} extra={<Link to="/"><Button>{t('backHome')}</Button></Link>} />;
}
