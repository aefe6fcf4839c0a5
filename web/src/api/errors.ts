// Every error code the API can answer with, as a sentence a person can act on, in each language the
// console speaks (a test checks this list against the codes the API's source documents). Unknown codes fall
// back to the server's own message.
import { ApiFailure, toFailure } from './baseQuery';

export type Lang = 'en' | 'zh';

export const ERROR_MESSAGES: Record<string, Record<Lang, string>> = {
  invalid_credentials: { en: 'Wrong username or password.', zh: '用户名或密码错误。' },
  missing_token: { en: 'Please sign in.', zh: '请先登录。' },
  invalid_token: { en: 'Your sign-in has expired. Please sign in again.', zh: '登录已过期，请重新登录。' },
  session_ended: { en: 'This session was signed out. Please sign in again.', zh: '此会话已退出，请重新登录。' },
  invalid_refresh_token: { en: 'Your session has ended. Please sign in again.', zh: '会话已结束，请重新登录。' },
  refresh_token_reused: {
    en: 'Your session was ended for safety (a token was used twice). Please sign in again.',
    zh: '为安全起见会话已结束（令牌被重复使用），请重新登录。',
  },
  account_disabled: { en: 'This account is deactivated.', zh: '该账号已停用。' },
  api_key_not_allowed: {
    en: 'API keys work on /v1 and the question endpoints only. Sign in for the rest.',
    zh: 'API 密钥仅可用于 /v1 和问答接口，其他操作请登录。',
  },
  invalid_api_key: { en: 'The API key is unknown or revoked.', zh: 'API 密钥无效或已被撤销。' },
  too_many_api_keys: {
    en: 'You have the most API keys allowed (20). Revoke one first.',
    zh: 'API 密钥数量已达上限（20 个），请先撤销一个。',
  },
  api_key_exists: { en: 'This API key already exists. Try again.', zh: '该 API 密钥已存在，请重试。' },
  api_key_revoked: { en: 'This API key is already revoked.', zh: '该 API 密钥已被撤销。' },
  forbidden: { en: 'You are not allowed to do this.', zh: '您无权执行此操作。' },
  not_found: { en: 'Not found (it may have been removed).', zh: '未找到（可能已被删除）。' },
  username_taken: { en: 'That username is taken.', zh: '用户名已被占用。' },
  email_taken: { en: 'That e-mail address is already used.', zh: '该邮箱已被使用。' },
  wrong_password: { en: 'The current password is wrong.', zh: '当前密码错误。' },
  self_lockout: { en: 'You cannot remove your own admin rights or deactivate yourself.', zh: '不能撤销自己的管理员权限或停用自己。' },
  concurrent_modification: { en: 'Someone changed this at the same time. Try again.', zh: '数据被同时修改，请重试。' },
  validation_failed: { en: 'Some values are not valid.', zh: '部分输入无效。' },
  invalid_body: { en: 'The request is not valid.', zh: '请求内容无效。' },
  token_expired: { en: 'Your sign-in has expired. Please sign in again.', zh: '登录已过期，请重新登录。' },
  body_too_large: { en: 'The request is too large.', zh: '请求内容过大。' },
  invalid_idempotency_key: { en: 'The retry key of this request is not valid.', zh: '请求的重试键无效。' },
  idempotency_key_reused: {
    en: 'This retry key was already used for another request.',
    zh: '该重试键已用于另一个请求。',
  },
  idempotency_key_in_progress: {
    en: 'The same request is still being processed. Wait a moment.',
    zh: '相同的请求仍在处理中，请稍候。',
  },
  idempotency_key_committed: {
    en: 'The first request with this retry key was cut off after it was saved. Look for what it created.',
    zh: '使用该重试键的第一个请求在保存后被中断。请查看它已创建的内容。',
  },
  unknown_checkpoint: { en: 'The training task has no checkpoint at that step.', zh: '该训练任务在此步骤没有检查点。' },
  alias_not_found: { en: 'That alias does not name this model.', zh: '该别名未指向此模型。' },
  no_previous_version: {
    en: 'There is no earlier deployed version to roll back to.',
    zh: '没有可回滚到的先前部署版本。',
  },
  unknown_model: { en: 'No deployed model has that id or alias.', zh: '没有该 ID 或别名的已部署模型。' },
  invalid_request_error: { en: 'The request is not valid.', zh: '请求无效。' },
  model_not_found: { en: 'No deployed model has that name.', zh: '没有该名称的已部署模型。' },
  model_unavailable: { en: 'The model could not answer; try again.', zh: '模型无法回答，请重试。' },
  no_default_model: {
    en: 'Several models are deployed and none is the default: choose one.',
    zh: '已部署多个模型且未设置默认模型，请选择一个。',
  },
  websocket_required: { en: 'This address is for WebSocket connections.', zh: '此地址仅用于 WebSocket 连接。' },
  invalid_text: {
    en: 'A text contains a NUL character, which cannot be stored. Remove it and try again.',
    zh: '文本中含有无法保存的 NUL 字符，请删除后重试。',
  },
  malformed_json: { en: 'The request is not valid JSON.', zh: '请求不是有效的 JSON。' },
  unreadable_body: { en: 'The request could not be read.', zh: '无法读取请求。' },
  bad_request: { en: 'The request is not valid.', zh: '请求无效。' },
  invalid_query: { en: 'The filters are not valid.', zh: '筛选条件无效。' },
  invalid_path: { en: 'The address is not valid.', zh: '地址无效。' },
  unsupported_media_type: { en: 'This kind of file or request is not supported.', zh: '不支持此类文件或请求。' },
  unsupported_content: {
    en: 'This file is not a dataset: use JSONL, a JSON array or CSV.',
    zh: '该文件不是数据集：请使用 JSONL、JSON 数组或 CSV。',
  },
  format_mismatch: { en: 'The file does not match the format chosen.', zh: '文件内容与所选格式不符。' },
  invalid_multipart: { en: 'The upload is malformed. Try again.', zh: '上传数据格式错误，请重试。' },
  upload_interrupted: { en: 'The upload was interrupted. Try again.', zh: '上传中断，请重试。' },
  dataset_too_large: { en: 'The file is larger than the upload limit.', zh: '文件超过上传大小限制。' },
  file_infected: { en: 'The file contains a virus and was refused.', zh: '文件含有病毒，已被拒绝。' },
  virus_scan_unavailable: { en: 'The virus scanner is unavailable; uploads are paused.', zh: '病毒扫描不可用，暂停上传。' },
  dataset_exists: { en: 'A dataset with that name exists.', zh: '同名数据集已存在。' },
  dataset_archived: { en: 'This dataset is archived.', zh: '该数据集已归档。' },
  dataset_invalid: { en: 'The dataset did not pass validation.', zh: '数据集未通过校验。' },
  dataset_not_valid: { en: 'The dataset version is not validated yet.', zh: '该数据集版本尚未通过校验。' },
  unknown_dataset: { en: 'No such dataset.', zh: '数据集不存在。' },
  unknown_dataset_version: { en: 'No such dataset version.', zh: '数据集版本不存在。' },
  training_task_exists: { en: 'That training task exists.', zh: '训练任务已存在。' },
  invalid_state: { en: 'Not possible in the current state.', zh: '当前状态下无法执行。' },
  unknown_training_task: { en: 'No such training task.', zh: '训练任务不存在。' },
  training_not_completed: { en: 'The training has not completed.', zh: '训练尚未完成。' },
  model_exists: { en: 'That model version exists.', zh: '该模型版本已存在。' },
  model_not_ready: { en: 'The model is not ready yet (still exporting?).', zh: '模型尚未就绪（仍在导出？）。' },
  model_not_merged: { en: 'The training kept no merged model to register.', zh: '训练未生成可注册的合并模型。' },
  model_not_deployed: { en: 'This model is not deployed.', zh: '该模型未部署。' },
  no_deployed_model: { en: 'No model is deployed yet.', zh: '尚未部署任何模型。' },
  no_eval_split: { en: 'The training held out no evaluation split.', zh: '训练未保留评估集。' },
  duplicate_question: { en: 'That question was already asked.', zh: '该问题已提交。' },
  rate_limited: { en: 'Too many requests. Wait a moment and try again.', zh: '请求过多，请稍后再试。' },
  unavailable: { en: 'A service is unavailable. Try again soon.', zh: '服务暂不可用，请稍后再试。' },
  internal: { en: 'Something went wrong on the server.', zh: '服务器出错。' },
  network_error: { en: 'The server cannot be reached.', zh: '无法连接服务器。' },
};

/** The message for a failed call: the code's sentence, plus the field and reason the API named. */
export function describeError(thrown: ApiFailure | unknown, lang: Lang): string {
  if (!thrown) return '';
  // Whatever was thrown (an Axios error from a direct call, a JavaScript error) is read as an API failure.
  const failure = isFailure(thrown) ? thrown : toFailure(thrown);
  const { code, message, details } = failure.error;
  const known = ERROR_MESSAGES[code]?.[lang];
  if (!known) return message || code;
  const field = typeof details?.field === 'string' ? details.field : undefined;
  const reason = typeof details?.reason === 'string' ? details.reason : undefined;
  if (code === 'validation_failed' || code === 'invalid_body') {
    const why = reason ?? message;
    return field ? `${known} ${field}: ${why}` : `${known} ${why}`;
  }
  if (code === 'file_infected' && typeof details?.signature === 'string') return `${known} (${details.signature})`;
  return known;
}

function isFailure(value: unknown): value is ApiFailure {
  const error = (value as ApiFailure | null)?.error;
  return !!error && typeof error === 'object' && typeof error.code === 'string';
}

/** The field a 422 names, for showing the message next to it. */
export function errorField(failure: ApiFailure | undefined | null): string | undefined {
  const field = failure?.error.details?.field;
  return typeof field === 'string' ? field : undefined;
}
