// Admin: users (create, change role, activate/deactivate, sign out everywhere, erase a person's question
// history after a confirmation); each user's audit timeline is one click away.
import { useState } from 'react';
import { Alert, Button, Card, Form, Input, Modal, Popconfirm, Select, Space, Switch, Table, Typography, message } from 'antd';
import { Link } from 'react-router-dom';
import { useCreateUserMutation, useEndUserSessionsMutation, useEraseUserHistoryMutation, usePatchUserMutation, useUsersQuery } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError, errorField } from '../../api/errors';
import type { User } from '../../api/types';
import { Loadable } from '../../components/States';
import { when } from '../../components/format';
import { useI18n } from '../../i18n';
import type { Key } from '../../i18n/messages';

const ROLES = ['admin', 'trainer', 'user'];

export default function UsersPage() {
  const { t, lang } = useI18n();
  const [page, setPage] = useState(1);
  // Polled: a new user or a role change shows in the list a moment after it is accepted (a read model).
  const { data, isLoading, error, refetch } = useUsersQuery({ page, page_size: 20 }, { pollingInterval: 3000 });
  const [create, creating] = useCreateUserMutation();
  const [patch] = usePatchUserMutation();
  const [endSessions] = useEndUserSessionsMutation();
  const [erase] = useEraseUserHistoryMutation();
  const [open, setOpen] = useState(false);
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  const field = errorField(failure);
  const roleOptions = ROLES.map((r) => ({ value: r, label: t(`role_${r}` as Key) }));

  return (
    <Card title={<Typography.Title level={4} style={{ margin: 0 }}>{t('menuUsers')}</Typography.Title>}
      extra={<Button type="primary" onClick={() => { setFailure(null); setOpen(true); }}>{t('createUser')}</Button>}>
      <Loadable loading={isLoading} error={error} onRetry={refetch} empty={!data?.items.length}>
        <Table<User> rowKey="id" dataSource={data?.items} pagination={{ current: page, total: data?.total, pageSize: 20, onChange: setPage }}
          columns={[
            { title: t('username'), dataIndex: 'username', render: (u: string, user) => <Link to={`/admin/audit?type=User&id=${user.id}`}>{u}</Link> },
            { title: t('displayName'), dataIndex: 'display_name' },
            { title: t('email'), dataIndex: 'email' },
            { title: t('role'), dataIndex: 'role', render: (r: string, user) => (
              <span data-testid={`role-${user.username}`}>
                <Select size="small" value={r} style={{ width: 120 }} options={roleOptions}
                  onChange={(role) => patch({ id: user.id, role }).unwrap().then(() => message.success(t('saved'))).catch(fail)} />
              </span>
            ) },
            { title: t('active'), dataIndex: 'is_active', render: (a: boolean, user) => (
              <Switch size="small" checked={a} onChange={(is_active) => patch({ id: user.id, is_active }).unwrap().catch(fail)} />
            ) },
            { title: t('created'), dataIndex: 'created_at', render: when },
            { title: '', render: (_, user) => (
              <Space>
                <Popconfirm title={t('signOutEverywhereConfirm')} onConfirm={() => endSessions(user.id).unwrap().then(() => message.success(t('done'))).catch(fail)}>
                  <Button size="small">{t('signOutEverywhere')}</Button>
                </Popconfirm>
                <Popconfirm title={t('eraseHistoryConfirm', { name: user.username })} onConfirm={() => erase(user.id).unwrap().then(() => message.success(t('done'))).catch(fail)}>
                  <Button size="small" danger>{t('eraseHistory')}</Button>
                </Popconfirm>
              </Space>
            ) },
          ]} />
      </Loadable>
      <Modal open={open} title={t('createUser')} onCancel={() => setOpen(false)} footer={null} destroyOnClose>
        <Form layout="vertical" initialValues={{ role: 'user' }}
          onFinish={(v: { username: string; email: string; password: string; role: string; display_name?: string }) => {
            setFailure(null);
            create(v).unwrap().then(() => setOpen(false)).catch((e: ApiFailure) => setFailure(e));
          }}>
          <Form.Item label={t('username')} name="username" rules={[{ required: true, message: t('required') }]}
            validateStatus={field === 'username' || failure?.error.code === 'username_taken' ? 'error' : undefined}
            help={field === 'username' || failure?.error.code === 'username_taken' ? describeError(failure, lang) : undefined}>
            <Input id="new-username" />
          </Form.Item>
          <Form.Item label={t('email')} name="email" rules={[{ required: true, message: t('required') }, { type: 'email', message: t('badEmail') }]}
            validateStatus={field === 'email' || failure?.error.code === 'email_taken' ? 'error' : undefined}
            help={field === 'email' || failure?.error.code === 'email_taken' ? describeError(failure, lang) : undefined}>
            <Input id="new-email" />
          </Form.Item>
          <Form.Item label={t('displayName')} name="display_name"><Input /></Form.Item>
          <Form.Item label={t('password')} name="password" rules={[{ required: true, message: t('required') }, { min: 8, message: t('passwordTooShort') }]}
            validateStatus={field === 'password' ? 'error' : undefined} help={field === 'password' ? describeError(failure, lang) : undefined}>
            <Input.Password id="new-password" />
          </Form.Item>
          <Form.Item label={t('role')} name="role"><Select options={roleOptions} id="new-role" /></Form.Item>
          {failure && !field && !['username_taken', 'email_taken'].includes(failure.error.code) && <Alert type="error" showIcon message={describeError(failure, lang)} style={{ marginBottom: 16 }} />}
          <Button type="primary" htmlType="submit" loading={creating.isLoading}>{t('create')}</Button>
        </Form>
      </Modal>
    </Card>
  );
}
