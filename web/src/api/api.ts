// The one RTK Query API slice: every endpoint the console calls, with cache tags so a change refreshes the
// lists that show it. Calls go through the refresh-once base query (baseQuery.ts).
import { createApi } from '@reduxjs/toolkit/query/react';
import { createAuthClient } from './baseQuery';
import type * as T from './types';

type Query = Record<string, string | number | boolean | undefined>;

let onSessionLost: (returnTo: string) => void = () => {};
/** Where the app sends the user when the session is gone (set by the router). */
export function setSessionLostHandler(handler: (returnTo: string) => void) {
  onSessionLost = handler;
}

export const client = createAuthClient({
  onSessionLost: (returnTo) => onSessionLost(returnTo),
  currentPath: () => window.location.pathname + window.location.search,
});

export const api = createApi({
  reducerPath: 'api',
  baseQuery: client.baseQuery,
  tagTypes: ['Profile', 'Sessions', 'ApiKeys', 'Users', 'Datasets', 'Tasks', 'Models', 'History', 'Alerts', 'Audit'],
  endpoints: (b) => ({
    profile: b.query<T.User, void>({ query: () => '/api/users/profile', providesTags: ['Profile'] }),
    updateProfile: b.mutation<T.User, { email?: string; display_name?: string }>({
      query: (body) => ({ url: '/api/users/profile', method: 'PUT', body }),
      invalidatesTags: ['Profile'],
    }),
    changePassword: b.mutation<unknown, { current_password: string; new_password: string }>({
      query: (body) => ({ url: '/api/users/profile/password', method: 'PUT', body }),
      invalidatesTags: ['Sessions'],
    }),
    sessions: b.query<T.SessionList, void>({ query: () => '/api/users/profile/sessions', providesTags: ['Sessions'] }),
    endSession: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/users/profile/sessions/${id}`, method: 'DELETE' }),
      invalidatesTags: ['Sessions'],
    }),
    endOtherSessions: b.mutation<unknown, void>({
      query: () => ({ url: '/api/users/profile/sessions', method: 'DELETE' }),
      invalidatesTags: ['Sessions'],
    }),
    apiKeys: b.query<T.ApiKeyList, void>({ query: () => '/api/users/profile/api-keys', providesTags: ['ApiKeys'] }),
    createApiKey: b.mutation<T.CreatedApiKey, { name: string }>({
      query: (body) => ({ url: '/api/users/profile/api-keys', method: 'POST', body }),
      invalidatesTags: ['ApiKeys'],
    }),
    revokeApiKey: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/users/profile/api-keys/${id}`, method: 'DELETE' }),
      invalidatesTags: ['ApiKeys'],
    }),

    users: b.query<T.UserPage, Query>({ query: (params) => ({ url: '/api/users', params }), providesTags: ['Users'] }),
    createUser: b.mutation<T.User, { username: string; email: string; password: string; role: string; display_name?: string }>({
      query: (body) => ({ url: '/api/users', method: 'POST', body }),
      invalidatesTags: ['Users', 'Audit'],
    }),
    patchUser: b.mutation<T.User, { id: string; role?: string; is_active?: boolean }>({
      query: ({ id, ...body }) => ({ url: `/api/users/${id}`, method: 'PATCH', body }),
      invalidatesTags: ['Users', 'Audit'],
    }),
    endUserSessions: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/users/${id}/sessions`, method: 'DELETE' }),
      invalidatesTags: ['Audit'],
    }),
    eraseUserHistory: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/users/${id}/qa-history`, method: 'DELETE' }),
      invalidatesTags: ['Audit'],
    }),
    auditEvents: b.query<T.AuditPage, { after: number; limit: number }>({
      query: (params) => ({ url: '/api/audit/events', params }),
      providesTags: ['Audit'],
    }),
    auditHistory: b.query<T.AuditEvent[], { type: string; id: string }>({
      query: ({ type, id }) => `/api/audit/${encodeURIComponent(type)}/${encodeURIComponent(id)}`,
      providesTags: ['Audit'],
    }),

    datasets: b.query<T.DatasetPage, Query>({
      query: (params) => ({ url: '/api/data/datasets', params }),
      providesTags: ['Datasets'],
    }),
    dataset: b.query<T.DatasetDetail, string>({ query: (id) => `/api/data/datasets/${id}`, providesTags: ['Datasets'] }),
    preview: b.query<T.PreviewPage, { id: string; offset: number; limit: number }>({
      query: ({ id, ...params }) => ({ url: `/api/data/datasets/${id}/preview`, params }),
    }),
    validate: b.mutation<unknown, { id: string; tokenizer_model_id?: string }>({
      query: ({ id, tokenizer_model_id }) => ({
        url: `/api/data/datasets/${id}/validate`,
        method: 'POST',
        params: tokenizer_model_id ? { tokenizer_model_id } : undefined,
      }),
      invalidatesTags: ['Datasets'],
    }),
    archive: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/data/datasets/${id}`, method: 'DELETE' }),
      invalidatesTags: ['Datasets'],
    }),

    tasks: b.query<T.TaskPage, Query>({ query: (params) => ({ url: '/api/training/tasks', params }), providesTags: ['Tasks'] }),
    task: b.query<T.Task, string>({ query: (id) => `/api/training/tasks/${id}`, providesTags: ['Tasks'] }),
    progress: b.query<T.ProgressReport, string>({ query: (id) => `/api/training/tasks/${id}/progress` }),
    checkpoints: b.query<T.CheckpointList, string>({ query: (id) => `/api/training/tasks/${id}/checkpoints`, providesTags: ['Tasks'] }),
    nodes: b.query<T.NodeList, void>({ query: () => '/api/system/nodes' }),
    createTask: b.mutation<{ id: string }, T.CreateTask>({
      query: (body) => ({ url: '/api/training/tasks', method: 'POST', body }),
      invalidatesTags: ['Tasks'],
    }),
    startTask: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/training/tasks/${id}/start`, method: 'POST' }),
      invalidatesTags: ['Tasks'],
    }),
    stopTask: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/training/tasks/${id}/stop`, method: 'POST' }),
      invalidatesTags: ['Tasks'],
    }),

    models: b.query<T.ModelPage, Query>({ query: (params) => ({ url: '/api/models', params }), providesTags: ['Models'] }),
    model: b.query<T.Model, string>({ query: (id) => `/api/models/${id}`, providesTags: ['Models'] }),
    baseModels: b.query<T.BaseModelList, void>({ query: () => '/api/models/base' }),
    routing: b.query<T.Routing, void>({ query: () => '/api/models/aliases', providesTags: ['Models'] }),
    setAlias: b.mutation<unknown, { id: string; alias: string }>({
      query: ({ id, alias }) => ({ url: `/api/models/${id}/aliases`, method: 'POST', body: { alias } }),
      invalidatesTags: ['Models'],
    }),
    removeAlias: b.mutation<unknown, { id: string; alias: string }>({
      query: ({ id, alias }) => ({ url: `/api/models/${id}/aliases/${encodeURIComponent(alias)}`, method: 'DELETE' }),
      invalidatesTags: ['Models'],
    }),
    makeDefault: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/models/${id}/default`, method: 'POST' }),
      invalidatesTags: ['Models'],
    }),
    rollbackModel: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/models/${id}/rollback`, method: 'POST' }),
      invalidatesTags: ['Models'],
    }),
    registerModel: b.mutation<{ id: string }, { name: string; training_task_id?: string; checkpoint_step?: number; base_model_id?: string }>({
      query: (body) => ({ url: '/api/models', method: 'POST', body }),
      invalidatesTags: ['Models'],
    }),
    deployModel: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/models/${id}/deploy`, method: 'POST' }),
      invalidatesTags: ['Models'],
    }),
    undeployModel: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/models/${id}/undeploy`, method: 'POST' }),
      invalidatesTags: ['Models'],
    }),
    testModel: b.mutation<unknown, { id: string; body: Record<string, unknown> }>({
      query: ({ id, body }) => ({ url: `/api/models/${id}/test`, method: 'POST', body }),
      invalidatesTags: ['Models'],
    }),

    history: b.query<T.QuestionPage, Query>({ query: (params) => ({ url: '/api/qa/history', params }), providesTags: ['History'] }),
    conversation: b.query<T.ConversationPage, string>({ query: (id) => `/api/qa/history/${id}`, providesTags: ['History'] }),
    deleteHistory: b.mutation<unknown, string>({
      query: (id) => ({ url: `/api/qa/history/${id}`, method: 'DELETE' }),
      invalidatesTags: ['History'],
    }),
    deleteAllHistory: b.mutation<unknown, void>({
      query: () => ({ url: '/api/qa/history', method: 'DELETE' }),
      invalidatesTags: ['History'],
    }),

    alerts: b.query<T.AlertPage, Query>({ query: (params) => ({ url: '/api/alerts', params }), providesTags: ['Alerts'] }),
    acknowledgeAlert: b.mutation<unknown, { id: string; note?: string }>({
      query: ({ id, note }) => ({ url: `/api/alerts/${id}/acknowledge`, method: 'POST', body: { note } }),
      invalidatesTags: ['Alerts'],
    }),
    resolveAlert: b.mutation<unknown, { id: string; note?: string }>({
      query: ({ id, note }) => ({ url: `/api/alerts/${id}/resolve`, method: 'POST', body: { note } }),
      invalidatesTags: ['Alerts'],
    }),
  }),
});

export const {
  useProfileQuery, useUpdateProfileMutation, useChangePasswordMutation, useSessionsQuery, useEndSessionMutation,
  useEndOtherSessionsMutation, useApiKeysQuery, useCreateApiKeyMutation, useRevokeApiKeyMutation, useUsersQuery, useCreateUserMutation, usePatchUserMutation, useEndUserSessionsMutation,
  useEraseUserHistoryMutation, useAuditEventsQuery, useAuditHistoryQuery, useDatasetsQuery, useDatasetQuery,
  usePreviewQuery, useValidateMutation, useArchiveMutation, useTasksQuery, useTaskQuery, useProgressQuery,
  useCreateTaskMutation, useStartTaskMutation, useStopTaskMutation, useModelsQuery, useRegisterModelMutation,
  useDeployModelMutation, useUndeployModelMutation, useModelQuery, useBaseModelsQuery, useRoutingQuery, useSetAliasMutation, useRemoveAliasMutation,
  useMakeDefaultMutation, useRollbackModelMutation, useTestModelMutation, useHistoryQuery,
  useConversationQuery, useDeleteHistoryMutation, useDeleteAllHistoryMutation, useAlertsQuery,
  useAcknowledgeAlertMutation, useResolveAlertMutation, useCheckpointsQuery, useNodesQuery,
} = api;
