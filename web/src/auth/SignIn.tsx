// Sign-in: username and password; on success back to the page the user came from (`?next=`).
import { useState } from 'react';
import { Alert, Button, Card, Form, Input, Segmented, Typography } from 'antd';
import { useNavigate, useSearchParams } from 'react-router-dom';
import { client, api } from '../api/api';
import { saveTokens } from '../api/tokens';
import { describeError } from '../api/errors';
import { toFailure, ApiFailure } from '../api/baseQuery';
import type { TokenResponse } from '../api/types';
import { useI18n } from '../i18n';
import { store } from '../store';

/** Only paths of this site are followed after sign-in (never another origin). */
export function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/sign-in') ? next : '/';
}

export default function SignIn() {
  const { t, lang, setLang } = useI18n();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (values: { username: string; password: string }) => {
    setBusy(true);
    setFailure(null);
    try {
      const tokens = await client.request<TokenResponse>({
        url: '/api/auth/login',
        method: 'POST',
        body: values,
        anonymous: true,
      });
      store.dispatch(api.util.resetApiState());
      saveTokens({ access_token: tokens.access_token, refresh_token: tokens.refresh_token });
      navigate(safeNext(params.get('next')), { replace: true });
    } catch (e) {
      setFailure(toFailure(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div style={{ minHeight: '100vh', display: 'flex', alignItems: 'center', justifyContent: 'center', background: '#f6ffed' }}>
      <Card style={{ width: 380 }}>
        <div style={{ display: 'flex', justifyContent: 'space-between', alignItems: 'center' }}>
          <Typography.Title level={3} style={{ margin: 0 }} className="bonsai-logo"><img src="/favicon.svg" alt="" /> Bonsai</Typography.Title>
          <Segmented size="small" value={lang} onChange={(v) => setLang(v as 'en' | 'zh')} options={[{ label: 'EN', value: 'en' }, { label: '中文', value: 'zh' }]} />
        </div>
        <Typography.Paragraph type="secondary">{t('signInTitle')}</Typography.Paragraph>
        {params.get('next') && !failure && <Alert type="info" showIcon message={t('signInToContinue')} style={{ marginBottom: 16 }} />}
        {failure && <Alert type="error" showIcon message={describeError(failure, lang)} style={{ marginBottom: 16 }} role="alert" />}
        <Form layout="vertical" onFinish={submit} requiredMark={false}>
          <Form.Item label={t('username')} name="username" rules={[{ required: true, message: t('required') }]}>
            <Input autoComplete="username" autoFocus id="username" />
          </Form.Item>
          <Form.Item label={t('password')} name="password" rules={[{ required: true, message: t('required') }]}>
            <Input.Password autoComplete="current-password" id="password" />
          </Form.Item>
          <Button type="primary" htmlType="submit" block loading={busy}>{t('signIn')}</Button>
        </Form>
      </Card>
    </div>
  );
}
