// The client against a real `cmet serve`: submit -> stream -> download -> verify the webhook.
// tests/clients/test_typescript_client.py starts the server and runs `node --test` with CMET_SERVER,
// CMET_API_KEY, CMET_WEBHOOK_SECRET and CMET_TEST_CLIP; without them these tests skip.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { test } from 'node:test';

import { ApiError, Client, WebhookVerificationError, verifyWebhook } from '../src/index.js';

const { CMET_SERVER, CMET_API_KEY, CMET_WEBHOOK_SECRET, CMET_TEST_CLIP } = process.env;
const skip = !(CMET_SERVER && CMET_API_KEY && CMET_WEBHOOK_SECRET && CMET_TEST_CLIP) && 'no cmet serve given';

/** A local receiver: resolves with the first delivery's headers and raw body. */
function receiver() {
  /** @type {(value: {headers: Record<string, any>, body: Buffer}) => void} */
  let resolve = () => {};
  const delivered = new Promise((r) => (resolve = r));
  const server = createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      response.writeHead(204).end();
      resolve({ headers: request.headers, body: Buffer.concat(chunks) });
    });
  });
  return new Promise((ready) =>
    server.listen(0, '127.0.0.1', () => ready({ server, delivered, url: `http://127.0.0.1:${server.address().port}/hook` })),
  );
}

test('submit, stream, download and verify the webhook', { skip, timeout: 180_000 }, async () => {
  const client = new Client(); // CMET_SERVER, CMET_API_KEY
  const { server, delivered, url } = await receiver();
  try {
    const asset = await client.uploads.create(new Blob([readFileSync(CMET_TEST_CLIP)]), { filename: 'talk.mp4' });
    const job = await client.edits.create({
      video_asset: asset.id,
      emotion: 'happy',
      webhook_url: url,
      webhook_events: ['edit.succeeded'],
    });
    assert.equal(job.state, 'queued');
    const seen = [];
    const done = await client.edits.wait(job, { onProgress: (j) => seen.push(j.state), timeoutMs: 150_000 });
    assert.equal(done.state, 'succeeded');
    assert.ok(['queued', 'running'].includes(seen[0]), seen.join());
    assert.equal(seen.at(-1), 'succeeded');
    const video = await client.edits.download(done);
    assert.equal(new TextDecoder().decode(video.slice(4, 8)), 'ftyp');

    const { headers, body } = await delivered;
    const event = await verifyWebhook(headers, body, CMET_WEBHOOK_SECRET);
    assert.equal(event.type, 'edit.succeeded');
    assert.equal(event.data.id, job.id);
    await assert.rejects(verifyWebhook(headers, Buffer.from(body.toString().replace('succeeded', 'failed')), CMET_WEBHOOK_SECRET), WebhookVerificationError);
    const stamp = Number(headers['webhook-timestamp']);
    await assert.rejects(verifyWebhook(headers, body, CMET_WEBHOOK_SECRET, { now: stamp + 301 }), /away from this clock/);
  } finally {
    server.close();
  }
});

test('a multipart submission refused carries the problem code', { skip, timeout: 60_000 }, async () => {
  const client = new Client({ baseUrl: CMET_SERVER, apiKey: CMET_API_KEY });
  const video = new Blob([readFileSync(CMET_TEST_CLIP)]);
  await assert.rejects(client.edits.create({ emotion: 'no_such_feeling' }, { video }), (error) => {
    assert.ok(error instanceof ApiError);
    assert.equal(error.code, 'unknown_emotion');
    assert.equal(error.status, 422);
    return true;
  });
});

test('a batch is queued, followed to its end and answered again for the same key and body', { skip, timeout: 120_000 }, async () => {
  const client = new Client();
  const asset = await client.uploads.create(new Blob([readFileSync(CMET_TEST_CLIP)]), { filename: 'talk.mp4' });
  const edits = [{ video_asset: asset.id, emotion: 'surprised', intensity: 0.8 }];
  const batch = await client.batches.create(edits, { idempotencyKey: 'ts-batch' });
  assert.match(batch.id, /^bat_[0-9a-f]{32}$/);
  assert.equal(batch.edit_ids.length, 1);
  const seen = [];
  const done = await client.batches.wait(batch, { onProgress: (job) => seen.push(job.state), timeoutMs: 100_000 });
  assert.equal(done.state, 'completed');
  assert.equal(done.counts.succeeded, 1);
  assert.equal(seen.at(-1), 'succeeded');
  const again = await client.batches.create(edits, { idempotencyKey: 'ts-batch' });
  assert.deepEqual(again, done);
  await assert.rejects(client.batches.create([{ ...edits[0], emotion: 'sad' }], { idempotencyKey: 'ts-batch' }), /idempotency_key_reused/);
});
