// The signed-in user's API keys (for /v1, OpenAI's shapes, and the question endpoints): the list (name, prefix,
// created, last used), creating one with a name (its secret shown once, in a modal that can copy it and is
// never shown again), revoking one after a confirmation, and how to call /v1/chat/completions with a key.
import { useState } from 'react';
import { Alert, Button, Card, Form, Input, Modal, Popconfirm, Space, Table, Typography, message } from 'antd';
import { useApiKeysQuery, useCreateApiKeyMutation, useRevokeApiKeyMutation } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { ApiKey, CreatedApiKey } from '../../api/types';
import { Loadable } from '../../components/States';
import { when } from '../../components/format';
import { useI18n } from '../../i18n';

/** How to call the chat completions with `key` (a placeholder when the key is not at hand). */
export function curlExample(origin: string, key = '$BONSAI_API_KEY'): string {
  const body = JSON.stringify({ model: 'MODEL', messages: [{ role: 'user', content: 'What is Bonsai?' }] });
  return [
    `curl ${origin}/v1/models -H "Authorization: Bearer ${key}"`,
    '',
    `curl ${origin}/v1/chat/completions \\`,
    `  -H "Authorization: Bearer ${key}" \\`,
    '  -H "Content-Type: application/json" \\',
    `  -d '${body}'`,
  ].join('\n');
}

/** The key just created, its secret shown this once: copy it, then close (it cannot be shown again). */
export function CreatedKeyModal({ created, onClose }: { created: CreatedApiKey | null; onClose: () => void }) {
  const { t } = useI18n();
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    if (!created) return;
    try {
      await navigator.clipboard.writeText(created.secret);
      setCopied(true);
      message.success(t('copied'));
    } catch {
      // No clipboard (a page served over plain HTTP, a refused permission): the secret is selectable.
      message.error(t('copyFailed'));
    }
  };
  const close = () => {
    setCopied(false);
    onClose();
  };
  return (
    <Modal open={!!created} title={t('apiKeyCreated', { name: created?.name ?? '' })} onCancel={close} maskClosable={false} destroyOnHidden
      footer={<Button type="primary" onClick={close} data-testid="api-key-done">{copied ? t('done') : t('apiKeyCloseAnyway')}</Button>}>
      {created && (
        <Space direction="vertical" style={{ width: '100%' }}>
          <Alert type="warning" showIcon message={t('apiKeyShownOnce')} data-testid="api-key-warning" />
          <Space.Compact style={{ width: '100%' }}>
            <Input readOnly value={created.secret} data-testid="api-key-secret" aria-label={t('apiKeySecret')}
              onFocus={(e) => e.target.select()} style={{ fontFamily: 'monospace' }} />
            <Button type="primary" onClick={copy} data-testid="api-key-copy">{copied ? t('copied') : t('copy')}</Button>
          </Space.Compact>
          <Typography.Text type="secondary">{t('apiKeyUsage')}</Typography.Text>
          <Typography.Paragraph><pre style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all', margin: 0 }}>{curlExample(window.location.origin, created.secret)}</pre></Typography.Paragraph>
        </Space>
      )}
    </Modal>
  );
}

export default function ApiKeysCard() {
  const { t, lang } = useI18n();
  const keys = useApiKeysQuery();
  const [create, creating] = useCreateApiKeyMutation();
  const [revoke] = useRevokeApiKeyMutation();
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const [form] = Form.useForm<{ name: string }>();
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));
  const submit = ({ name }: { name: string }) => {
    setFailure(null);
    create({ name: name.trim() }).unwrap().then((key) => {
      form.resetFields();
      setCreated(key);
    }).catch((e: ApiFailure) => setFailure(e));
  };
  return (
    <Card title={t('apiKeys')} data-testid="api-keys">
      <Space direction="vertical" style={{ width: '100%' }} size="middle">
        <Typography.Text type="secondary">{t('apiKeysHint')}</Typography.Text>
        <Form form={form} name="apikey" layout="inline" onFinish={submit}>
          <Form.Item name="name" label={t('apiKeyName')} rules={[{ required: true, whitespace: true, message: t('required') }, { max: 100, message: t('tooLong') }]}>
            <Input placeholder={t('apiKeyNamePlaceholder')} maxLength={100} style={{ width: 260 }} />
          </Form.Item>
          <Button type="primary" htmlType="submit" loading={creating.isLoading} data-testid="api-key-create">{t('createApiKey')}</Button>
        </Form>
        {failure && <Alert type="error" showIcon message={describeError(failure, lang)} closable onClose={() => setFailure(null)} />}
        <Loadable loading={keys.isLoading} error={keys.error} onRetry={keys.refetch} empty={!keys.data?.items.length} emptyText={t('noApiKeys')}>
          <Table<ApiKey> rowKey="id" size="small" dataSource={keys.data?.items} pagination={false} data-testid="api-key-table"
            columns={[
              { title: t('name'), dataIndex: 'name', render: (name: string) => <span data-testid="api-key-name-cell">{name}</span> },
              { title: t('apiKeyPrefix'), dataIndex: 'prefix', render: (p: string) => <Typography.Text code>{p}…</Typography.Text> },
              { title: t('created'), dataIndex: 'created_at', render: when },
              { title: t('lastUsed'), dataIndex: 'last_used_at', render: (v?: string | null) => (v ? when(v) : t('neverUsed')) },
              {
                title: '',
                render: (_, k) => (
                  <Popconfirm title={t('revokeApiKeyConfirm', { name: k.name })} okText={t('revoke')} okButtonProps={{ danger: true }}
                    onConfirm={() => revoke(k.id).unwrap().then(() => message.success(t('apiKeyRevoked'))).catch(fail)}>
                    <Button size="small" danger data-testid="api-key-revoke">{t('revoke')}</Button>
                  </Popconfirm>
                ),
              },
            ]} />
        </Loadable>
        <div>
          <Typography.Text strong>{t('apiKeyHowTo')}</Typography.Text>
          <Typography.Paragraph type="secondary" style={{ marginBottom: 4 }}>{t('apiKeyHowToHint')}</Typography.Paragraph>
          <pre data-testid="api-key-curl" style={{ background: '#fafafa', padding: 12, borderRadius: 8, whiteSpace: 'pre-wrap', wordBreak: 'break-all', margin: 0 }}>
            {curlExample(window.location.origin)}
          </pre>
        </div>
      </Space>
      <CreatedKeyModal created={created} onClose={() => setCreated(null)} />
    </Card>
  );
}
