// Chat: choose a deployed model, ask; the conversation list comes from the history, a conversation can be
// continued, a question, a conversation or everything deleted. Answers stream in as they are generated (server-
// sent events read with fetch); Stop ends the generation (the question is recorded as `cancelled`). Once the
// answer is recorded, the conversation is read again and shows it with its response time. Two models can
// answer the same question side by side.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { Dispatch, SetStateAction } from 'react';
import { Button, Card, Empty, Input, InputNumber, List, Popconfirm, Select, Space, Switch, Tooltip, Typography, message } from 'antd';
import { useSearchParams } from 'react-router-dom';
import {
  api, client, useConversationQuery, useDeleteAllHistoryMutation, useDeleteHistoryMutation, useHistoryQuery, useModelsQuery,
  useRoutingQuery,
} from '../../api/api';
import { askStreamed } from '../../api/askStream';
import type { AskBody } from '../../api/askStream';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { Question } from '../../api/types';
import { Loadable } from '../../components/States';
import Turn from './Turn';
import type { LiveState } from './Turn';
import { useI18n } from '../../i18n';
import { store } from '../../store';

const DEFAULT_MAX_TOKENS = 128;

/** Waits for a question that is still being answered (the stream ended `pending`, or was stopped). */
async function settle(q: Question): Promise<Question> {
  let current = q;
  for (let i = 0; i < 60 && current.status === 'pending'; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    current = await client.request<Question>({ url: `/api/qa/questions/${q.question_id}` });
  }
  return current;
}

/** A question being answered now: its text, the question as the API accepted it, the answer so far. */
interface Live {
  question: string;
  q?: Question;
  answer: string;
  state: LiveState;
}

/** The live turn as a question to show: what the API accepted (or the text asked), the answer so far. */
function liveQuestion(live: Live): Question {
  const base = live.q ?? ({ question: live.question, status: 'pending' } as Question);
  return { ...base, answer: live.answer || base.answer };
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
  const [maxTokens, setMaxTokens] = useState<number>(DEFAULT_MAX_TOKENS);
  const [asking, setAsking] = useState(false);
  const [live, setLive] = useState<Live | null>(null);
  const [compare, setCompare] = useState<Live | null>(null);
  const stream = useRef<AbortController | null>(null);
  const [deleteOne] = useDeleteHistoryMutation();
  const [deleteAll] = useDeleteAllHistoryMutation();
  const conversation = useConversationQuery(sessionId ?? '', { skip: !sessionId });
  const fail = (e: unknown) => message.error(describeError(e as ApiFailure, lang));

  // Leaving the page stops a generation no one will read.
  useEffect(() => () => stream.current?.abort(), []);

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

  /** Streams one answer into `set`; resolves with the question as recorded (null when stopped before the API
   * accepted it). A stopped answer is recorded by the server a moment later, with finish reason `cancelled`. */
  const streamInto = async (body: AskBody, set: Dispatch<SetStateAction<Live | null>>, signal: AbortSignal): Promise<Question | null> => {
    let accepted: Question | undefined;
    try {
      const end = await askStreamed(client.fetch, body, {
        onQuestion: (q) => {
          accepted = q;
          set((l) => l && { ...l, q });
        },
        onDelta: (_, soFar) => set((l) => l && { ...l, answer: soFar }),
      }, signal);
      const q = end.kind === 'pending' ? await settle(end.question) : end.question;
      set((l) => l && { ...l, q, answer: q.answer ?? l.answer, state: 'done' });
      return q;
    } catch (e) {
      if (!signal.aborted) throw e;
      set((l) => l && { ...l, state: 'stopped' });
      if (!accepted) return null;
      // The server records what was generated (finish reason `cancelled`) a moment after the stop.
      const pending = accepted;
      void settle(pending).catch(() => pending).then((recorded) => {
        set((l) => (l && l.q?.question_id === recorded.question_id ? { ...l, q: recorded } : l));
        store.dispatch(api.util.invalidateTags(['History']));
      });
      return pending;
    }
  };

  const send = async () => {
    const question = text.trim();
    if (!question || !modelId) return;
    const controller = new AbortController();
    stream.current = controller;
    const params = { question, max_new_tokens: maxTokens };
    setAsking(true);
    setText('');
    setLive({ question, answer: '', state: 'streaming' });
    setCompare(sideBySide && secondId ? { question, answer: '', state: 'streaming' } : null);
    const second = sideBySide && secondId
      ? streamInto({ ...params, model_id: secondId }, setCompare, controller.signal).catch((e) => {
        fail(e);
        setCompare(null);
      })
      : null;
    try {
      const answered = await streamInto({ ...params, model_id: modelId, session_id: sessionId }, setLive, controller.signal);
      // Unless another conversation was opened meanwhile, this one is the answer's.
      if (answered && stream.current === controller) setSessionId(answered.session_id);
    } catch (e) {
      fail(e);
      setLive(null);
      setText((current) => current || question);
    } finally {
      await second;
      if (stream.current === controller) stream.current = null;
      setAsking(false);
      // The recorded question shows in the conversation (read again) and in the history.
      store.dispatch(api.util.invalidateTags(['History']));
    }
  };

  const stop = () => stream.current?.abort();

  /** Opens another conversation (or a new one): a generation still running is stopped. */
  const open = (id: string | undefined) => {
    const running = stream.current;
    stream.current = null;
    running?.abort();
    setLive(null);
    setCompare(null);
    setSessionId(id);
  };

  const turns = sessionId ? conversation.data?.items ?? [] : [];
  // The live turn shows until the conversation, read again, holds the question as recorded.
  const liveId = live?.q?.question_id;
  const recorded = liveId ? turns.find((q) => q.question_id === liveId && q.status !== 'pending') : undefined;
  const shown = live && !recorded ? turns.filter((q) => q.question_id !== liveId) : turns;
  const aliasesOf = (id: string) => Object.entries((routing.data?.aliases ?? {}) as Record<string, string>).filter(([, target]) => target === id).map(([a]) => a);
  const modelOptions = (models.data?.items ?? []).map((m) => {
    const tags = [...(m.id === routing.data?.default_model_id ? [t('defaultModel').toLowerCase()] : []), ...aliasesOf(m.id)];
    return { value: m.id, label: `${m.name} v${m.version}${tags.length ? ` (${tags.join(', ')})` : ''}` };
  });
  return (
    <div style={{ display: 'grid', gridTemplateColumns: '260px 1fr', gap: 16 }}>
      <Card title={t('conversations')} size="small"
        extra={<Space>
          <Button size="small" onClick={() => open(undefined)}>{t('newConversation')}</Button>
          <Popconfirm title={t('deleteAllConfirm')} onConfirm={() => deleteAll().unwrap().then(() => {
            setRemoved(new Set(conversations.map((c) => c.session_id)));
            open(undefined);
          }).catch(fail)}>
            <Button size="small" danger disabled={!conversations.length}>{t('deleteAll')}</Button>
          </Popconfirm>
        </Space>}>
        <Loadable loading={history.isLoading} error={history.error} empty={!conversations.length} emptyText={t('noConversations')}>
          <List size="small" dataSource={conversations} className="conversations"
            renderItem={(q) => (
              <List.Item style={{ cursor: 'pointer', background: q.session_id === sessionId ? '#f6ffed' : undefined }} onClick={() => q.session_id !== sessionId && open(q.session_id)}
                actions={[<Popconfirm key="d" title={t('deleteConversationConfirm')} onConfirm={() => deleteOne(q.session_id).unwrap().then(() => {
                  setRemoved((r) => new Set(r).add(q.session_id));
                  if (q.session_id === sessionId) open(undefined);
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
              {!shown.length && !live && <Empty description={t('askSomething')} />}
              {shown.map((q) => <Turn key={q.question_id} q={q} onDelete={() => deleteOne(q.question_id).unwrap().catch(fail)} />)}
              {live && !recorded && <Turn q={liveQuestion(live)} live={live.state} />}
              {compare && (
                <Card size="small" title={`${t('secondModel')}: ${modelOptions.find((o) => o.value === secondId)?.label ?? ''}`}>
                  <Turn q={liveQuestion(compare)} live={compare.state} />
                </Card>
              )}
            </div>
            <Space.Compact style={{ width: '100%', marginTop: 12 }}>
              <Input.TextArea value={text} onChange={(e) => setText(e.target.value)} autoSize={{ minRows: 1, maxRows: 4 }} maxLength={4000}
                placeholder={t('askPlaceholder')} onPressEnter={(e) => { if (!e.shiftKey) { e.preventDefault(); if (!asking) void send(); } }} id="question-input" />
              {asking
                ? <Button danger onClick={stop} data-testid="stop-button">{t('stop')}</Button>
                : <Button type="primary" onClick={send} disabled={!modelId}>{t('ask')}</Button>}
            </Space.Compact>
            <Space style={{ marginTop: 8 }}>
              <Typography.Text type="secondary"><label htmlFor="max-tokens">{t('maxTokens')}</label></Typography.Text>
              <Tooltip title={t('maxTokensHelp')}>
                <InputNumber id="max-tokens" size="small" min={1} max={1024} value={maxTokens} disabled={asking}
                  onChange={(v) => setMaxTokens(typeof v === 'number' ? v : DEFAULT_MAX_TOKENS)} />
              </Tooltip>
            </Space>
          </>
        )}
      </Card>
    </div>
  );
}
