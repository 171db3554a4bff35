// The TypeScript client of the cmet API: plain ES module with JSDoc types (checked by `tsc`), so it
// runs as it is in Node 20+, Deno, Bun and browsers with no build step and no runtime dependency
// beyond fetch, streams and Web Crypto. Its types come from `schema.d.ts`, which openapi-typescript
// makes from the repository's openapi.yaml (`npm run generate`; a test fails when it is stale).

/** @typedef {import('./schema.js').components['schemas']} Schemas */
/** @typedef {Schemas['Job']} Job */
/** @typedef {Schemas['Preview']} Preview */
/** @typedef {Schemas['EditCreate']} EditCreate */
/** @typedef {Schemas['PreviewCreate']} PreviewCreate */
/** @typedef {Schemas['Upload']} Upload */
/** @typedef {Schemas['Asset']} Asset */
/** @typedef {Schemas['Emotion']} Emotion */
/** @typedef {Schemas['WebhookSecret']} WebhookSecret */
/** @typedef {Schemas['Batch']} Batch */
/** @typedef {Schemas['EditEvent'] | Schemas['PreviewEvent'] | Schemas['BatchEvent']} WebhookEvent */

const FINAL = new Set(['succeeded', 'failed', 'canceled']);
const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const TOLERANCE_S = 300;

/** Base of every error this package throws. */
export class CmetError extends Error {}

/** The server answered with a problem (RFC 9457); `code` is its machine-readable error code. */
export class ApiError extends CmetError {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} detail
   * @param {Record<string, unknown>} [problem]
   */
  constructor(status, code, detail, problem = {}) {
    super(`[${code}] ${detail} (HTTP ${status})`);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.problem = problem;
  }

  /** @param {Response} response */
  static async of(response) {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      if (typeof body?.code === 'string') return new ApiError(response.status, body.code, String(body.detail ?? ''), body);
    } catch {
      // not JSON: a proxy's page
    }
    return new ApiError(response.status, 'http_error', text.slice(0, 200) || response.statusText);
  }
}

/** A job ended `failed` or `canceled`; `code` is its error code (`canceled` when canceled). */
export class JobFailedError extends CmetError {
  /** @param {string} jobId @param {string} state @param {string} code @param {string} message */
  constructor(jobId, state, code, message) {
    super(`${jobId} ${state}: [${code}] ${message}`);
    this.jobId = jobId;
    this.state = state;
    this.code = code;
  }
}

/** A webhook request is not a fresh delivery signed with the secret. */
export class WebhookVerificationError extends CmetError {}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @param {string} name @returns {string | undefined} */
const env = (name) => /** @type {any} */ (globalThis).process?.env?.[name];

/**
 * @typedef {object} Call
 * @property {string} method
 * @property {string} path a path under the server, or a presigned absolute URL (`signed`: sent without the key)
 * @property {unknown} [json]
 * @property {FormData} [form]
 * @property {Blob} [body]
 * @property {Record<string, string>} [headers]
 * @property {boolean} [signed]
 */

/** A connection to one cmet server. `baseUrl` defaults to `CMET_SERVER`, `apiKey` to `CMET_API_KEY`. */
export class Client {
  /** @param {{baseUrl?: string, apiKey?: string, maxRetries?: number}} [options] */
  constructor({ baseUrl, apiKey, maxRetries = 3 } = {}) {
    const key = apiKey ?? env('CMET_API_KEY');
    if (!key) throw new CmetError('no API key: pass apiKey or set CMET_API_KEY (`cmet keys create` prints one)');
    this.baseUrl = (baseUrl ?? env('CMET_SERVER') ?? 'http://127.0.0.1:8000').replace(/\/+$/, '');
    this.auth = { Authorization: `Bearer ${key}` };
    this.maxRetries = maxRetries;
    /** @type {Jobs<Job, EditCreate>} */
    this.edits = new Jobs(this, '/v1/edits');
    /** @type {Jobs<Preview, PreviewCreate>} */
    this.previews = new Jobs(this, '/v1/previews');
    this.batches = new Batches(this);
    this.uploads = new Uploads(this);
    this.emotions = new Emotions(this);
  }

  /**
   * One call, retried when the server did nothing (a refused connection, 429, 503) or when repeating it is
   * harmless (GET, PUT, DELETE, or a submission with its Idempotency-Key); an error status throws ApiError.
   * @param {Call} call
   * @returns {Promise<Response>}
   */
  async send(call) {
    const url = /^https?:\/\//.test(call.path) ? call.path : this.baseUrl + call.path;
    /** @type {Record<string, string>} */
    const headers = { ...(call.headers ?? {}), ...(call.signed ? {} : this.auth) };
    const idempotent = ['GET', 'PUT', 'DELETE'].includes(call.method) || 'Idempotency-Key' in headers;
    /** @type {BodyInit | undefined} */
    let body = call.body ?? call.form;
    if (call.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(call.json);
    }
    for (let attempt = 0; ; attempt += 1) {
      const backoff = Math.min(500 * 2 ** attempt, 8000);
      let response;
      try {
        response = await fetch(url, { method: call.method, headers, body });
      } catch (error) {
        if (attempt >= this.maxRetries || !idempotent) throw error;
        await sleep(backoff);
        continue;
      }
      const undone = response.status === 429 || response.status === 503;
      if (RETRY_STATUSES.has(response.status) && attempt < this.maxRetries && (undone || idempotent)) {
        const asked = Number(response.headers.get('retry-after'));
        await response.body?.cancel();
        await sleep(Number.isFinite(asked) && asked > 0 ? Math.min(asked, 30) * 1000 : backoff);
        continue;
      }
      if (!response.ok) throw await ApiError.of(response);
      return response;
    }
  }

  /** @template T @param {Call} call @returns {Promise<T>} */
  async json(call) {
    return /** @type {Promise<T>} */ ((await this.send(call)).json());
  }

  /** A new webhook secret for this key, shown once; the old one signs beside it for the grace period. */
  rotateWebhookSecret() {
    return /** @type {Promise<WebhookSecret>} */ (this.json({ method: 'POST', path: '/v1/keys/self/webhook-secret' }));
  }
}

/**
 * Edits and previews: create, get, list, wait, download, cancel, delete.
 * @template {Job | Preview} J
 * @template {object} B
 */
export class Jobs {
  /** @param {Client} client @param {string} path */
  constructor(client, path) {
    this.client = client;
    this.path = path;
  }

  /**
   * Queue a job. `body` is the contract's request (`emotion`, `video_url` or `video_asset`, ...); a `video`
   * Blob goes in the same request as multipart. Every retry repeats one Idempotency-Key.
   * @param {B} body
   * @param {{video?: Blob, filename?: string, idempotencyKey?: string}} [options]
   * @returns {Promise<J>}
   */
  create(body, { video, filename = 'video.mp4', idempotencyKey } = {}) {
    const headers = { 'Idempotency-Key': idempotencyKey ?? `cmet-client-${crypto.randomUUID()}` };
    if (video === undefined) return this.client.json({ method: 'POST', path: this.path, json: body, headers });
    const form = new FormData();
    for (const [name, value] of Object.entries(body)) {
      if (value === undefined || value === null) continue;
      if (Array.isArray(value) && name !== 'face_box') value.forEach((item) => form.append(name, String(item)));
      else if (Array.isArray(value)) form.append(name, value.join(','));
      else form.append(name, typeof value === 'object' ? JSON.stringify(value) : String(value));
    }
    form.append('video', video, filename);
    return this.client.json({ method: 'POST', path: this.path, form, headers });
  }

  /** @param {string} id @returns {Promise<J>} */
  get(id) {
    return this.client.json({ method: 'GET', path: `${this.path}/${id}` });
  }

  /** @param {{state?: string, limit?: number}} [query] @returns {Promise<J[]>} */
  async list({ state, limit = 20 } = {}) {
    const params = new URLSearchParams({ limit: String(limit), ...(state ? { state } : {}) });
    /** @type {{data: J[]}} */
    const page = await this.client.json({ method: 'GET', path: `${this.path}?${params}` });
    return page.data;
  }

  /** @param {string} id @returns {Promise<J>} */
  cancel(id) {
    return this.client.json({ method: 'POST', path: `${this.path}/${id}/cancel` });
  }

  /** @param {string} id */
  async delete(id) {
    await this.client.send({ method: 'DELETE', path: `${this.path}/${id}` });
  }

  /**
   * Follow the job to its end over its event stream (`GET .../events`), polling when the stream cannot be
   * had; `onProgress` sees every change once. A failed or canceled job throws JobFailedError.
   * @param {J | string} job
   * @param {{onProgress?: (job: J) => void, timeoutMs?: number, pollMs?: number, throwOnFailure?: boolean}} [options]
   * @returns {Promise<J>}
   */
  async wait(job, { onProgress, timeoutMs, pollMs = 1000, throwOnFailure = true } = {}) {
    const id = typeof job === 'string' ? job : job.id;
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    /** @type {string | undefined} */
    let last;
    /** @param {J} now */
    const seen = (now) => {
      const mark = JSON.stringify([now.state, now.stage, now.progress]);
      if (mark !== last) onProgress?.(now);
      last = mark;
      return FINAL.has(now.state);
    };
    /** @type {(event: string, data: string) => J | undefined} */
    const onEvent = (event, data) => {
      if (!['state', 'progress', 'result'].includes(event)) return undefined;
      const now = /** @type {J} */ (JSON.parse(data));
      return seen(now) ? now : undefined;
    };
    let final = await followEvents(this.client, `${this.path}/${id}/events`, onEvent, deadline);
    while (final === undefined) {
      const now = await this.get(id);
      if (seen(now)) final = now;
      else if (Date.now() > deadline) throw new CmetError(`${id} did not end within ${timeoutMs} ms`);
      else await sleep(Math.min(pollMs, deadline - Date.now()));
    }
    if (throwOnFailure && (final.state === 'failed' || final.state === 'canceled')) {
      throw new JobFailedError(id, final.state, final.error?.code ?? 'canceled', final.error?.message ?? 'canceled');
    }
    return final;
  }

  /**
   * The finished job's file (an edit's mp4, a sheet's PNG) as bytes.
   * @param {J | string} job
   * @returns {Promise<Uint8Array>}
   */
  async download(job) {
    const now = typeof job === 'string' ? await this.get(job) : job;
    const url = now.output_url ?? ('sheet_url' in now ? now.sheet_url : null);
    if (!url) throw new CmetError(`${now.id} has nothing to download (state ${now.state})`);
    const response = await this.client.send({ method: 'GET', path: url, signed: true });
    return new Uint8Array(await response.arrayBuffer());
  }
}

/**
 * The final value `onEvent` finds in a server-sent event stream (`error` events throw their problem), or
 * undefined when the stream cannot be had or ends early (the caller polls then).
 * @template T
 * @param {Client} client @param {string} path
 * @param {(event: string, data: string) => T | undefined} onEvent
 * @param {number} deadline
 * @returns {Promise<T | undefined>}
 */
async function followEvents(client, path, onEvent, deadline) {
  let response;
  try {
    response = await fetch(`${client.baseUrl}${path}`, { headers: client.auth });
  } catch {
    return undefined;
  }
  if (!response.ok || !response.body || !response.headers.get('content-type')?.includes('text/event-stream')) {
    await response.body?.cancel();
    return undefined;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  /** @type {string[]} */
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (data.length && event === 'error') {
            const problem = JSON.parse(data.join('\n'));
            throw new ApiError(404, problem.code, problem.detail, problem);
          }
          const final = data.length ? onEvent(event, data.join('\n')) : undefined;
          if (final !== undefined) return final;
          event = 'message';
          data = [];
        } else if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (Date.now() > deadline) throw new CmetError(`${path} did not end in time`);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Several edits in one request, accepted or refused whole, followed together. */
export class Batches {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * Queue `edits` (each an `EditCreate`: inputs by `video_url` or `video_asset`, each with its own options)
   * as one batch; every retry repeats one Idempotency-Key, and the same key and body answer the same batch.
   * @param {Partial<EditCreate>[]} edits
   * @param {{webhookUrl?: string, idempotencyKey?: string}} [options]
   * @returns {Promise<Batch>}
   */
  create(edits, { webhookUrl, idempotencyKey } = {}) {
    const headers = { 'Idempotency-Key': idempotencyKey ?? `cmet-client-${crypto.randomUUID()}` };
    const json = { edits, ...(webhookUrl ? { webhook_url: webhookUrl } : {}) };
    return this.client.json({ method: 'POST', path: '/v1/batches', json, headers });
  }

  /** @param {string} id @returns {Promise<Batch>} */
  get(id) {
    return this.client.json({ method: 'GET', path: `/v1/batches/${id}` });
  }

  /**
   * The batch once every edit ended (`counts` says how), from its event stream, polling when the stream
   * cannot be had; `onProgress` sees each edit's changes as the stream tells them.
   * @param {Batch | string} batch
   * @param {{onProgress?: (job: Job) => void, timeoutMs?: number, pollMs?: number}} [options]
   * @returns {Promise<Batch>}
   */
  async wait(batch, { onProgress, timeoutMs, pollMs = 1000 } = {}) {
    const id = typeof batch === 'string' ? batch : batch.id;
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    /** @type {(event: string, data: string) => Batch | undefined} */
    const onEvent = (event, data) => {
      if (event === 'batch') return JSON.parse(data);
      if (['state', 'progress', 'result'].includes(event)) onProgress?.(JSON.parse(data));
      return undefined;
    };
    let final = await followEvents(this.client, `/v1/batches/${id}/events`, onEvent, deadline);
    while (final === undefined) {
      const now = await this.get(id);
      if (now.state === 'completed') final = now;
      else if (Date.now() > deadline) throw new CmetError(`${id} did not end within ${timeoutMs} ms`);
      else await sleep(Math.min(pollMs, deadline - Date.now()));
    }
    return final;
  }
}

/** Assets: a file uploaded once through a presigned PUT, then named by id (`video_asset`). */
export class Uploads {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * @param {Blob} file
   * @param {{kind?: 'video' | 'speech', filename?: string, contentType?: string}} [options]
   * @returns {Promise<Upload>}
   */
  async create(file, { kind = 'video', filename = '', contentType = '' } = {}) {
    /** @type {Upload} */
    const made = await this.client.json({
      method: 'POST',
      path: '/v1/uploads',
      json: { kind, filename, content_type: contentType },
    });
    await this.client.send({ method: 'PUT', path: made.upload_url, body: file, headers: made.headers, signed: true });
    return made;
  }

  /** @param {string} id @returns {Promise<Asset>} */
  get(id) {
    return this.client.json({ method: 'GET', path: `/v1/uploads/${id}` });
  }
}

/** The built-in emotions and this key's own. */
export class Emotions {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
  }

  /** @returns {Promise<Emotion[]>} */
  async list() {
    /** @type {{data: Emotion[]}} */
    const page = await this.client.json({ method: 'GET', path: '/v1/emotions' });
    return page.data;
  }
}

/** @param {string} text @returns {Uint8Array<ArrayBuffer>} */
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/**
 * The delivered event if the request is a fresh delivery signed with `secret` (Standard Webhooks:
 * HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`), else WebhookVerificationError. Pass the
 * body exactly as received; `headers` is a Headers object or a plain record.
 * @param {Headers | Record<string, string | string[] | undefined>} headers
 * @param {string | Uint8Array} body
 * @param {string} secret the `whsec_...` of `cmet keys create` or `rotateWebhookSecret`
 * @param {{toleranceS?: number, now?: number}} [options] `now` in seconds since the epoch
 * @returns {Promise<WebhookEvent>}
 */
export async function verifyWebhook(headers, body, secret, { toleranceS = TOLERANCE_S, now } = {}) {
  /** @param {string} name */
  const header = (name) => {
    const value = headers instanceof Headers ? headers.get(name) : headers[name] ?? headers[name.toLowerCase()];
    return Array.isArray(value) ? value.join(' ') : value ?? '';
  };
  const id = header('webhook-id');
  const stamp = header('webhook-timestamp');
  if (!id || !/^\d+$/.test(stamp)) throw new WebhookVerificationError('missing webhook-id or webhook-timestamp header');
  const age = (now ?? Date.now() / 1000) - Number(stamp);
  if (Math.abs(age) > toleranceS) throw new WebhookVerificationError(`webhook-timestamp is ${Math.round(age)} s away from this clock`);
  const raw = typeof body === 'string' ? new TextEncoder().encode(body) : Uint8Array.from(body);
  const key = await crypto.subtle.importKey(
    'raw',
    fromBase64(secret.replace(/^whsec_/, '')),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['verify'],
  );
  const signed = new Uint8Array([...new TextEncoder().encode(`${id}.${stamp}.`), ...raw]);
  for (const entry of header('webhook-signature').split(' ')) {
    const [version, value] = entry.split(',');
    if (version !== 'v1' || !value) continue;
    let signature;
    try {
      signature = fromBase64(value);
    } catch {
      continue;
    }
    if (await crypto.subtle.verify('HMAC', key, signature, signed)) return JSON.parse(new TextDecoder().decode(raw));
  }
  throw new WebhookVerificationError('no signature matches the secret');
}
