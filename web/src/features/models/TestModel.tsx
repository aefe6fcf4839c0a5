// Testing a model: the form (cases typed as `question => expected`, a dataset, or the held-out split of its
// training) and the last test's report (totals and each case: question, expected, answer, passed, time).
import { useState } from 'react';
import { Alert, Button, Form, Input, InputNumber, Radio, Select, Space, Spin, Statistic, Table, Tag, Typography } from 'antd';
import { useDatasetsQuery, useTestModelMutation } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Model } from '../../api/types';
import { useI18n } from '../../i18n';

/** The cases typed one a line as `question => expected` (lines without `=>` or a question are skipped). */
export function parseCases(text: string): { question: string; expected: string }[] {
  return text.split('\n').map((l) => {
    const at = l.lastIndexOf('=>');
    return at < 0 ? null : { question: l.slice(0, at).trim(), expected: l.slice(at + 2).trim() };
  }).filter((c): c is { question: string; expected: string } => !!c && !!c.question);
}

export function TestModel({ model, onDone }: { model: Model; onDone: () => void }) {
  const { t, lang } = useI18n();
  const [kind, setKind] = useState<'cases' | 'dataset' | 'split'>('cases');
  const [test, testing] = useTestModelMutation();
  const datasets = useDatasetsQuery({ status: 'valid', page_size: 100 });
  const [failure, setFailure] = useState<ApiFailure | null>(null);
  const submit = async (v: { cases?: string; dataset_id?: string; limit?: number }) => {
    let body: Record<string, unknown>;
    if (kind === 'cases') body = { cases: parseCases(v.cases ?? '') };
    else if (kind === 'dataset') body = { dataset_id: v.dataset_id, limit: v.limit ?? 50 };
    else body = { split: 'eval' };
    try {
      await test({ id: model.id, body }).unwrap();
      onDone();
    } catch (e) {
      setFailure(e as ApiFailure);
    }
  };
  return (
    <Form layout="vertical" onFinish={submit}>
      <Radio.Group value={kind} onChange={(e) => setKind(e.target.value)} style={{ marginBottom: 16 }}>
        <Radio.Button value="cases">{t('testCases')}</Radio.Button>
        <Radio.Button value="dataset">{t('dataset')}</Radio.Button>
        <Radio.Button value="split" disabled={!model.training_task_id}>{t('heldOut')}</Radio.Button>
      </Radio.Group>
      {kind === 'cases' && <Form.Item name="cases" label={t('testCasesHelp')}><Input.TextArea rows={5} placeholder="What is Bonsai? => platform" /></Form.Item>}
      {kind === 'dataset' && (
        <Space>
          <Form.Item name="dataset_id" label={t('dataset')} rules={[{ required: true, message: t('required') }]}>
            <Select style={{ width: 260 }} options={(datasets.data?.items ?? []).map((d) => ({ value: d.id, label: d.name }))} />
          </Form.Item>
          <Form.Item name="limit" label={t('limit')}><InputNumber min={1} max={200} /></Form.Item>
        </Space>
      )}
      {failure && <Alert type="error" showIcon role="alert" message={describeError(failure, lang)} style={{ marginBottom: 16 }} />}
      <Button type="primary" htmlType="submit" loading={testing.isLoading}>{t('runTest')}</Button>
    </Form>
  );
}

interface Case { question: string; expected?: string; answer?: string; correct?: boolean; token_f1?: number; response_ms?: number }
interface Report { status?: string; error?: string; cases?: Case[]; totals?: { cases?: number; exact_match?: number; contains?: number; token_f1?: number } }

const pct = (v?: number) => (v == null ? '—' : `${(v * 100).toFixed(1)}%`);

export function TestReport({ model }: { model: Model }) {
  const { t } = useI18n();
  const report = model.test_report as Report | null;
  if (report?.status === 'testing') return <Space><Spin size="small" /><Typography.Text type="secondary">{t('testing')}</Typography.Text></Space>;
  if (report?.error) return <Typography.Text type="danger">{String(report.error)}</Typography.Text>;
  if (!report?.cases?.length) return <Typography.Text type="secondary">{t('noTestYet')}</Typography.Text>;
  return (
    <div data-testid="test-report">
      {report.totals && (
        <Space size="large" style={{ marginBottom: 8 }}>
          <Statistic title={t('testCases')} value={report.totals.cases ?? report.cases.length} />
          <Statistic title={t('containsScore')} value={pct(report.totals.contains)} />
          <Statistic title={t('exactMatch')} value={pct(report.totals.exact_match)} />
          <Statistic title="token F1" value={pct(report.totals.token_f1)} />
        </Space>
      )}
      <Table size="small" rowKey={(_, i) => String(i)} dataSource={report.cases} pagination={{ pageSize: 5 }}
        columns={[
          { title: t('question'), dataIndex: 'question' },
          { title: t('expected'), dataIndex: 'expected' },
          { title: t('answer'), dataIndex: 'answer' },
          { title: t('passed'), dataIndex: 'correct', render: (p?: boolean) => (p ? <Tag color="green">✓</Tag> : <Tag color="red">✗</Tag>) },
          { title: 'F1', dataIndex: 'token_f1', render: (f?: number) => (f == null ? '—' : f.toFixed(2)) },
          { title: 'ms', dataIndex: 'response_ms' },
        ]} />
    </div>
  );
}
