// The installed base models (`GET /api/models/base`) as a picker: what a training starts from and what a
// model is registered from. Each option says its size and shape; with nothing installed it says how to
// install one. Picks the first installed model when the form has none yet (unless it is optional).
import { useEffect } from 'react';
import { Select, Typography } from 'antd';
import { useBaseModelsQuery } from '../../api/api';
import type { ApiFailure } from '../../api/baseQuery';
import { describeError } from '../../api/errors';
import type { BaseModel } from '../../api/types';
import { bytes, count } from '../../components/format';
import { useI18n } from '../../i18n';

/** One line about a base model: parameters, layers, context, size on disk. */
export function baseModelSummary(m: BaseModel): string {
  return [
    `${count(m.parameters)} params`,
    m.layers != null ? `${m.layers} layers` : null,
    m.context_length != null ? `ctx ${m.context_length}` : null,
    bytes(m.size_bytes),
  ].filter(Boolean).join(' · ');
}

export function BaseModelSelect({ id, value, onChange, optional, placeholder, style }: {
  id?: string;
  value?: string;
  onChange?: (v: string) => void;
  /** May stay empty (a clear button, no model picked by itself). */
  optional?: boolean;
  placeholder?: string;
  style?: React.CSSProperties;
}) {
  const { t, lang } = useI18n();
  const { data, isLoading, error } = useBaseModelsQuery();
  const items = data?.items ?? [];
  useEffect(() => {
    if (!optional && !value && items.length) onChange?.(items[0].id);
  }, [optional, value, items, onChange]);
  return (
    <>
      <Select id={id} value={value} onChange={onChange} loading={isLoading} allowClear={optional} placeholder={placeholder} style={style} status={error ? 'error' : undefined}
        className="base-model-select" data-testid="base-model-select" showSearch optionFilterProp="value"
        notFoundContent={t('noBaseModels')}
        options={items.map((m) => ({
          value: m.id,
          label: (
            <span>
              {m.id} <Typography.Text type="secondary" style={{ fontSize: 12 }}>{baseModelSummary(m)}</Typography.Text>
            </span>
          ),
        }))} />
      {error && <Typography.Text type="danger" role="alert">{describeError(error as ApiFailure, lang)}</Typography.Text>}
    </>
  );
}
