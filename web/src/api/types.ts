// The API's types, by name, from the generated OpenAPI types (schema.d.ts, made by openapi-typescript from
// openapi.json, which a Rust test keeps equal to the API's own document).
import type { components } from './schema';

type S = components['schemas'];
export type User = S['UserDto'];
export type UserPage = S['UserPage'];
export type Role = User['role'];
export type Session = S['SessionDto'];
export type SessionList = S['SessionList'];
export type AuditEvent = S['AuditEventDto'];
export type AuditPage = S['AuditPage'];
export type Dataset = S['DatasetDto'];
export type DatasetDetail = S['DatasetDetail'];
export type DatasetPage = S['DatasetPage'];
export type DatasetVersion = S['VersionDto'];
export type PreviewPage = S['PreviewPage'];
export type Task = S['TaskDto'];
export type TaskPage = S['TaskPage'];
export type CreateTask = S['CreateTaskRequest'];
export type ProgressReport = S['ProgressReport'];
export type ProgressPoint = S['ProgressPoint'];
export type Model = S['ModelDto'];
export type ModelPage = S['ModelPage'];
export type BaseModel = S['BaseModelDto'];
export type BaseModelList = S['BaseModelList'];
export type Routing = S['Routing'];
export type Question = S['QuestionDto'];
export type QuestionPage = S['QuestionPage'];
export type ConversationPage = S['ConversationPage'];
export type Alert = S['AlertDto'];
export type AlertPage = S['AlertPage'];
export type TokenResponse = S['TokenResponse'];
export type ApiKey = S['ApiKeyDto'];
export type ApiKeyList = S['ApiKeyList'];
export type CreatedApiKey = S['CreatedApiKey'];
export type CheckpointList = S['CheckpointList'];
export type NodeList = S['NodeList'];
