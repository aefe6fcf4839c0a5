// Profile: edit name and e-mail, change the password, see the sessions (sign one out, or all the others), and
// the API keys (ApiKeys.tsx).
import { Alert, Button, Card, Form, Input, Popconfirm, Space, Table, Tag, message } from 'antd';
import { useState } from 'react';
import {
  useChangePasswordMutation, useEndOtherSessionsMutation, useEndSessionMutation, useProfileQuery, useSessionsQuery, useUpdateProfileMutation,
} from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Session } from '../../api/types';
import { Loadable } from '../../components/States';
import { when } from '../../components/format';
import { useI18n } from '../../i18n';
import ApiKeysCard from './ApiKeys';

export default function ProfilePage() {
  const { t, lang } = useI18n();
  const me = useProfileQuery();
  const sessions = useSessionsQuery();
  const [update, updating] = useUpdateProfileMutation();
  const [change, changing] = useChangePasswordMutation();
  const [endOne] = useEndSessionMutation();
  const [endOthers] = useEndOtherSessionsMutation();
  const [pwFailure, setPwFailure] = useState<ApiFailure | null>(null);
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  return (
    <Space direction="vertical" style={{ width: '100%' }} size="large">
      <Card title={t('menuProfile')}>
        <Loadable loading={me.isLoading} error={me.error}>
          {me.data && (
            <Form layout="vertical" style={{ maxWidth: 420 }} initialValues={{ display_name: me.data.display_name, email: me.data.email }}
              onFinish={(v: { display_name: string; email: string }) => update(v).unwrap().then(() => message.success(t('saved'))).catch(fail)}>
              <Form.Item label={t('username')}><Input value={me.data.username} disabled /></Form.Item>
              <Form.Item label={t('displayName')} name="display_name"><Input /></Form.Item>
              <Form.Item label={t('email')} name="email" rules={[{ type: 'email', message: t('badEmail') }]}><Input /></Form.Item>
              <Button type="primary" htmlType="submit" loading={updating.isLoading}>{t('save')}</Button>
            </Form>
          )}
        </Loadable>
      </Card>
      <Card title={t('changePassword')}>
        <Form layout="vertical" style={{ maxWidth: 420 }}
          onFinish={(v: { current_password: string; new_password: string }) => {
            setPwFailure(null);
            change(v).unwrap().then(() => message.success(t('saved'))).catch((e: ApiFailure) => setPwFailure(e));
          }}>
          <Form.Item label={t('currentPassword')} name="current_password" rules={[{ required: true, message: t('required') }]}
            validateStatus={pwFailure?.error.code === 'wrong_password' ? 'error' : undefined}
            help={pwFailure?.error.code === 'wrong_password' ? describeError(pwFailure, lang) : undefined}>
            <Input.Password />
          </Form.Item>
          <Form.Item label={t('newPassword')} name="new_password" rules={[{ required: true, message: t('required') }, { min: 8, message: t('passwordTooShort') }]}>
            <Input.Password />
          </Form.Item>
          {pwFailure && pwFailure.error.code !== 'wrong_password' && <Alert type="error" showIcon message={describeError(pwFailure, lang)} style={{ marginBottom: 16 }} />}
          <Button type="primary" htmlType="submit" loading={changing.isLoading}>{t('changePassword')}</Button>
        </Form>
      </Card>
      <Card title={t('sessions')} extra={<Popconfirm title={t('signOutOthersConfirm')} onConfirm={() => endOthers().unwrap().catch(fail)}><Button>{t('signOutOthers')}</Button></Popconfirm>}>
        <Loadable loading={sessions.isLoading} error={sessions.error} empty={!sessions.data?.items.length}>
          <Table<Session> rowKey="id" size="small" dataSource={sessions.data?.items} pagination={false}
            columns={[
              { title: t('client'), dataIndex: 'user_agent', render: (u?: string | null, s?: Session) => <span>{u ?? '—'} {s?.current && <Tag color="green">{t('thisSession')}</Tag>}</span> },
              { title: t('address'), dataIndex: 'address' },
              { title: t('started'), dataIndex: 'started_at', render: when },
              { title: t('lastUsed'), dataIndex: 'last_refreshed_at', render: when },
              { title: '', render: (_, s) => !s.current && <Button size="small" onClick={() => endOne(s.id).unwrap().catch(fail)}>{t('signOut')}</Button> },
            ]} />
        </Loadable>
      </Card>
      <ApiKeysCard />
    </Space>
  );
}
