// Chat: choose a deployed model, ask; the conversation list comes from the history, a conversation can be
// continued, a question, a conversation or everything deleted. Answers are shown whole (the API does not
// stream yet), with their response time. Two models can answer the same question side by side.
import { useEffect, useMemo, useState } from 'react';
import { Button, Card, Empty, Input, List, Popconfirm, Select, Space, Switch, Tag, Typography, message } from 'antd';
import { useSearchParams } from 'react-router-dom';
import {
  client, useAskMutation, useConversationQuery, useDeleteAllHistoryMutation, useDeleteHistoryMutation, useHistoryQuery, useModelsQuery,
  useRoutingQuery,
} from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Question } from '../../api/types';
import { Loadable } from '../../components/States';
import { useI18n } from '../../i18n';

/** Waits for a question the API answered 202 (still being answered). */
async function settle(q: Question): Promise<Question> {
  let current = q;
  for (let i = 0; i < 60 && current.status === 'pending'; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    current = await client.request<Question>({ url: `/api/qa/questions/${q.question_id}` });
  }
  return current;
}

function Turn({ q, onDelete }: { q: Question; onDelete?: () => void }) {
  const { t } = useI18n();
  return (
    <div style={{ marginBottom: 16 }} data-testid="turn">
      <div style={{ textAlign: 'right' }}>
        <Typography.Text style={{ background: '#f6ffed', padding: '6px 10px', borderRadius: 8, display: 'inline-block', whiteSpace: 'pre-wrap' }} data-testid="question">{q.question}</Typography.Text>
      </div>
      <div style={{ marginTop: 6 }}>
        <Typography.Paragraph style={{ background: '#fafafa', padding: '6px 10px', borderRadius: 8, whiteSpace: 'pre-wrap', marginBottom: 2 }} data-testid="answer">
          {q.answer ? q.answer : q.status === 'pending' ? '…' : q.answer === '' ? t('emptyAnswer') : q.status}
        </Typography.Paragraph>
        <Space size="small">
          {q.response_ms != null && <Typography.Text type="secondary" style={{ fontSize: 12 }}>{(q.response_ms / 1000).toFixed(2)} s</Typography.Text>}
          {q.cached && <Tag>{t('cached')}</Tag>}
          {onDelete && (
            <Popconfirm title={t('deleteQuestionConfirm')} onConfirm={onDelete}>
              <Button size="small" type="link" danger>{t('delete')}</Button>
            </Popconfirm>
          )}
        </Space>
      </div>
    </div>
  );
}

export default function ChatPage() {
  const { t, lang } = useI18n();
  const [params] = useSearchParams();
  const models = useModelsQuery({ deployed: true, page_size: 100 });
  const routing = useRoutingQuery();
  // Polled: the history is a read model, a deletion shows in it a moment after it is accepted.
  const history = useHistoryQuery({ page: 1, page_size: 100 }, { pollingInterval: 4000 });
  const [removed, setRemoved] = useState<Set<string>>(new Set());
  const [modelId, setModelId] = useState<string | undefined>(params.get('model') ?? undefined);
  const [secondId, setSecondId] = useState<string | undefined>();
  const [sideBySide, setSideBySide] = useState(false);
  const [sessionId, setSessionId] = useState<string | undefined>();
  const [text, setText] = useState('');
  const [asking, setAsking] = useState(false);
  const [pending, setPending] = useState<Question[]>([]);
  const [compare, setCompare] = useState<Question | null>(null);
  const [ask] = useAskMutation();
  const [deleteOne] = useDeleteHistoryMutation();
  const [deleteAll] = useDeleteAllHistoryMutation();
  const conversation = useConversationQuery(sessionId ?? '', { skip: !sessionId });
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));

  // The default model first (the one that answers questions naming none), else the newest deployed one.
  useEffect(() => {
    if (modelId || !models.data?.items.length || routing.isLoading) return;
    const preferred = models.data.items.find((m) => m.id === routing.data?.default_model_id) ?? models.data.items[0];
    setModelId(preferred.id);
  }, [models.data, modelId, routing.isLoading, routing.data]);

  const conversations = useMemo(() => {
    const seen = new Map<string, Question>();
    for (const q of history.data?.items ?? []) if (!seen.has(q.session_id) && !removed.has(q.session_id)) seen.set(q.session_id, q);
    return Array.from(seen.values());
  }, [history.data, removed]);

  const send = async () => {
    const question = text.trim();
    if (!question) return;
    setAsking(true);
    setCompare(null);
    try {
      const first = ask({ question, model_id: modelId, session_id: sessionId }).unwrap();
      const second = sideBySide && secondId ? ask({ question, model_id: secondId }).unwrap() : null;
      const answered = await settle(await first);
      setText('');
      setPending([]);
      setSessionId(answered.session_id);
      if (second) setCompare(await settle(await second));
      // A conversation already open shows the answer now; a new one loads when its id is set (a query that
      // has not started cannot be refetched).
      if (sessionId) void conversation.refetch();
    } catch (e) {
      fail(e);
    } finally {
      setAsking(false);
    }
  };

  const turns = sessionId ? conversation.data?.items ?? [] : [];
  const aliasesOf = (id: string) => Object.entries((routing.data?.aliases ?? {}) as Record<string, string>).filter(([, target]) => target === id).map(([a]) => a);
  const modelOptions = (models.data?.items ?? []).map((m) => {
    const tags = [...(m.id === routing.data?.default_model_id ? [t('defaultModel').toLowerCase()] : []), ...aliasesOf(m.id)];
    return { value: m.id, label: `${m.name} v${m.version}${tags.length ? ` (${tags.join(', ')})` : ''}` };
  });
  return (
    <div style={{ display: 'grid', gridTemplateColumns: '260px 1fr', gap: 16 }}>
      <Card title={t('conversations')} size="small"
        extra={<Space>
          <Button size="small" onClick={() => setSessionId(undefined)}>{t('newConversation')}</Button>
          <Popconfirm title={t('deleteAllConfirm')} onConfirm={() => deleteAll().unwrap().then(() => {
            setRemoved(new Set(conversations.map((c) => c.session_id)));
            setSessionId(undefined);
          }).catch(fail)}>
            <Button size="small" danger disabled={!conversations.length}>{t('deleteAll')}</Button>
          </Popconfirm>
        </Space>}>
        <Loadable loading={history.isLoading} error={history.error} empty={!conversations.length} emptyText={t('noConversations')}>
          <List size="small" dataSource={conversations} className="conversations"
            renderItem={(q) => (
              <List.Item style={{ cursor: 'pointer', background: q.session_id === sessionId ? '#f6ffed' : undefined }} onClick={() => setSessionId(q.session_id)}
                actions={[<Popconfirm key="d" title={t('deleteConversationConfirm')} onConfirm={() => deleteOne(q.session_id).unwrap().then(() => {
                  setRemoved((r) => new Set(r).add(q.session_id));
                  if (q.session_id === sessionId) setSessionId(undefined);
                }).catch(fail)}>
                  <Button size="small" type="link" danger onClick={(e) => e.stopPropagation()}>✕</Button></Popconfirm>]}>
                <Typography.Text ellipsis style={{ maxWidth: 170 }}>{q.question}</Typography.Text>
              </List.Item>
            )} />
        </Loadable>
      </Card>
      <Card title={<Space>
        <span data-testid="model-select"><Select style={{ width: 240 }} placeholder={t('chooseModel')} value={modelId} onChange={setModelId} options={modelOptions} loading={models.isLoading} /></span>
        <Switch checked={sideBySide} onChange={setSideBySide} /> <Typography.Text>{t('sideBySide')}</Typography.Text>
        {sideBySide && <Select style={{ width: 240 }} placeholder={t('secondModel')} value={secondId} onChange={setSecondId} options={modelOptions} />}
      </Space>}>
        {!models.isLoading && !modelOptions.length ? (
          <Empty description={t('noDeployedModels')} />
        ) : (
          <>
            <div style={{ minHeight: 240, maxHeight: '60vh', overflow: 'auto' }} data-testid="transcript">
              {sessionId && <Loadable loading={conversation.isLoading} error={conversation.error}>{null}</Loadable>}
              {!turns.length && !pending.length && !asking && <Empty description={t('askSomething')} />}
              {turns.map((q) => <Turn key={q.question_id} q={q} onDelete={() => deleteOne(q.question_id).unwrap().catch(fail)} />)}
              {asking && <Turn q={{ question: text, status: 'pending' } as Question} />}
              {compare && (
                <Card size="small" title={`${t('secondModel')}: ${modelOptions.find((o) => o.value === secondId)?.label ?? ''}`}>
                  <Turn q={compare} />
                </Card>
              )}
            </div>
            <Space.Compact style={{ width: '100%', marginTop: 12 }}>
              <Input.TextArea value={text} onChange={(e) => setText(e.target.value)} autoSize={{ minRows: 1, maxRows: 4 }} maxLength={4000}
                placeholder={t('askPlaceholder')} onPressEnter={(e) => { if (!e.shiftKey) { e.preventDefault(); void send(); } }} id="question-input" />
              <Button type="primary" onClick={send} loading={asking} disabled={!modelId}>{t('ask')}</Button>
            </Space.Compact>
          </>
        )}
      </Card>
    </div>
  );
}
