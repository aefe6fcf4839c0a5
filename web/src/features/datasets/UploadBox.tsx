// Upload a dataset file (drag and drop or pick), as a new dataset or a new version of one, with a progress
// bar; the server's refusals (413 too large, 415 not a dataset, 422 infected or malformed) are shown as
// readable messages under the drop zone.
import { useState } from 'react';
import { InboxOutlined } from '@ant-design/icons';
import { Alert, Button, Form, Input, Progress, Select, Space, Upload } from 'antd';
import type { UploadFile } from 'antd';
import { api, client } from '../../api/api';
import { ApiFailure, toFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import { useI18n } from '../../i18n';
import { store } from '../../store';

export function UploadBox({ datasetId, onUploaded }: { datasetId?: string; onUploaded: (id: string) => void }) {
  const { t, lang } = useI18n();
  const [file, setFile] = useState<File | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const [form] = Form.useForm<{ name?: string; description?: string; format?: string }>();

  const submit = async (values: { name?: string; description?: string; format?: string }) => {
    if (!file) {
      setFailure({ status: 0, error: { code: 'choose_file', message: t('chooseFile') } });
      return;
    }
    const body = new FormData();
    if (datasetId) body.append('dataset_id', datasetId);
    else if (values.name) body.append('name', values.name);
    if (values.description) body.append('description', values.description);
    if (values.format) body.append('format', values.format);
    body.append('file', file, file.name);
    setFailure(null);
    setProgress(0);
    try {
      const res = await client.request<{ id: string }>({ url: '/api/data/upload', method: 'POST', body, onProgress: setProgress });
      setProgress(1);
      // Validation starts at once; the dataset's page follows it live.
      await client.request({ url: `/api/data/datasets/${res.id}/validate`, method: 'POST' }).catch(() => undefined);
      store.dispatch(api.util.invalidateTags(['Datasets']));
      setFile(null);
      form.resetFields();
      onUploaded(res.id);
    } catch (e) {
      setFailure(toFailure(e));
      setProgress(null);
    }
  };

  const fileList: UploadFile[] = file ? [{ uid: '1', name: file.name, status: 'done' }] : [];
  return (
    <Form form={form} layout="vertical" onFinish={submit}>
      <Upload.Dragger
        multiple={false}
        fileList={fileList}
        beforeUpload={(f) => {
          setFile(f);
          setFailure(null);
          if (!datasetId && !form.getFieldValue('name')) form.setFieldValue('name', f.name.replace(/\.[^.]+$/, ''));
          return false;
        }}
        onRemove={() => setFile(null)}
        data-testid="dropzone"
      >
        <p style={{ fontSize: 32, margin: 0, color: '#389e0d' }}><InboxOutlined /></p>
        <p>{t('dropHere')}</p>
        <p style={{ color: '#888' }}>{t('dropHint')}</p>
      </Upload.Dragger>
      {!datasetId && (
        <Form.Item label={t('name')} name="name" style={{ marginTop: 16 }} rules={[{ max: 200, message: t('tooLong') }]}>
          <Input id="dataset-name" />
        </Form.Item>
      )}
      <Space style={{ marginTop: datasetId ? 16 : 0 }} align="start">
        <Form.Item label={t('format')} name="format">
          <Select style={{ width: 160 }} allowClear placeholder={t('detect')} options={['jsonl', 'json', 'csv'].map((v) => ({ value: v, label: v }))} />
        </Form.Item>
        <Form.Item label={t('description')} name="description">
          <Input style={{ width: 320 }} />
        </Form.Item>
      </Space>
      {progress !== null && <Progress percent={Math.round(progress * 100)} data-testid="upload-progress" />}
      {failure && (
        <Alert type="error" showIcon role="alert" style={{ marginBottom: 16 }} data-testid="upload-error"
          message={failure.error.code === 'choose_file' ? failure.error.message : describeError(failure, lang)}
          description={failure.status ? `${failure.status} ${failure.error.code}: ${failure.error.message}` : undefined} />
      )}
      <Button type="primary" htmlType="submit" loading={progress !== null && progress < 1}>{t('upload')}</Button>
    </Form>
  );
}
