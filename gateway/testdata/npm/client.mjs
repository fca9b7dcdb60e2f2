// client.mjs drives the gateway with the official openai npm package, through both of its client classes: OpenAI
// (baseURL ${GATEWAY_URL}/v1, Authorization: Bearer) and AzureOpenAI (endpoint GATEWAY_URL, api-key header,
// /openai/deployments/{model}/... and /openai/responses). gateway/npm_test.go runs it and checks what it prints:
// one JSON object per line on stdout. Any failure ends it with a message on stderr and a non-zero exit status.
//
// The argument names the suite: "chat" (the default) runs chat completions, a chat stream, embeddings and a wrong
// key; "responses" runs the Responses API: a create, a stream, follow-ups of each by previous_response_id, and a
// new conversation.
//
//	GATEWAY_URL=http://127.0.0.1:8080 GATEWAY_KEY=... node client.mjs [chat|responses]
import OpenAI, { AzureOpenAI } from 'openai';

const url = process.env.GATEWAY_URL;
const key = process.env.GATEWAY_KEY;
if (!url || !key) {
  fail('GATEWAY_URL and GATEWAY_KEY must be set');
}
const suite = process.argv[2] ?? 'chat';
if (suite !== 'chat' && suite !== 'responses') {
  fail(`unknown suite ${JSON.stringify(suite)}: want chat or responses`);
}

// The api-version the Azure class sends. The gateway does not pass it on: the failover client chooses the one
// each region gets, which the Go test checks.
const apiVersion = '2024-12-01-preview';

// The api-version the Azure class sends for the Responses API, which Azure's classic surface serves only from
// 2025-03-01-preview on.
const responsesAPIVersion = '2025-04-01-preview';

// maxRetries 0: a failure the gateway answers must reach the test, not be retried away by the client.
const common = { apiKey: key, maxRetries: 0, timeout: 20_000 };
const clients = [
  ['OpenAI', new OpenAI({ ...common, baseURL: `${url}/v1` })],
  ['AzureOpenAI', new AzureOpenAI({ ...common, endpoint: url, apiVersion: suite === 'responses' ? responsesAPIVersion : apiVersion })],
];

const messages = [{ role: 'user', content: 'Say hello.' }];
const embeddingInput = 'The quick brown fox';

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(message) {
  process.stderr.write(`client.mjs: ${message}\n`);
  process.exit(1);
}

function failoverHeaders(response) {
  return {
    'x-failover-region': response.headers.get('x-failover-region'),
    'x-failover-attempts': response.headers.get('x-failover-attempts'),
  };
}

async function run(cls, client) {
  let op = 'chat';
  try {
    {
      const { data, response } = await client.chat.completions.create({ model: 'gpt-4o', messages }).withResponse();
      const text = data.choices?.[0]?.message?.content;
      if (typeof text !== 'string' || text === '') {
        fail(`${cls} ${op}: no content in ${JSON.stringify(data)}`);
      }
      emit({ class: cls, op, status: response.status, text, model: data.model, headers: failoverHeaders(response) });
    }

    op = 'stream';
    {
      const { data: stream, response } = await client.chat.completions
        .create({ model: 'gpt-4o', messages, stream: true })
        .withResponse();
      let text = '';
      let chunks = 0;
      let finish = null;
      for await (const chunk of stream) {
        chunks++;
        for (const choice of chunk.choices ?? []) {
          text += choice.delta?.content ?? '';
          finish = choice.finish_reason ?? finish;
        }
      }
      emit({ class: cls, op, status: response.status, text, chunks, finish, headers: failoverHeaders(response) });
    }

    op = 'embeddings';
    {
      // The package's default: it asks for base64 and decodes the float32s itself.
      const { data, response } = await client.embeddings
        .create({ model: 'text-embedding-3-small', input: embeddingInput })
        .withResponse();
      const embedding = data.data?.[0]?.embedding;
      if (!Array.isArray(embedding) || embedding.length === 0 || !embedding.every(Number.isFinite)) {
        fail(`${cls} ${op}: no embedding vector in ${JSON.stringify(data)}`);
      }
      emit({ class: cls, op, status: response.status, embedding, headers: failoverHeaders(response) });
    }
  } catch (err) {
    fail(`${cls} ${op}: ${err?.status ?? ''} ${err?.stack ?? err}`);
  }
}

// A wrong key must be refused by the gateway with 401, which the package raises as an AuthenticationError.
async function wrongKey(cls, client) {
  try {
    const data = await client.chat.completions.create({ model: 'gpt-4o', messages });
    fail(`${cls} wrong key: expected a 401 error, got an answer: ${JSON.stringify(data)}`);
  } catch (err) {
    if (err?.status !== 401) {
      fail(`${cls} wrong key: expected an error with status 401, got: ${err?.status} ${err?.stack ?? err}`);
    }
    emit({
      class: cls,
      op: 'wrong-key',
      status: err.status,
      authenticationError: err instanceof OpenAI.AuthenticationError,
      code: err.code ?? null,
      message: err.message,
    });
  }
}

// The Responses API: a stored conversation's follow-up can only be served where its first turn was.
// - responses: a create; its id is what the follow-up continues.
// - responses-stream: a streamed create (typed events, no [DONE], the end is response.completed).
// - responses-followup: a create with previous_response_id of the first.
// - responses-stream-followup: a streamed create with previous_response_id of the streamed one.
// - responses-new: a create that continues nothing, last.
async function runResponses(cls, client) {
  let op = 'responses';
  try {
    const first = await createResponse(cls, op, client, { model: 'gpt-4o', input: 'Say hello.' });

    op = 'responses-stream';
    const streamed = await streamResponse(cls, op, client, { model: 'gpt-4o', input: 'Say hello.' });

    op = 'responses-followup';
    await createResponse(cls, op, client, { model: 'gpt-4o', input: 'Say it again.', previous_response_id: first });

    op = 'responses-stream-followup';
    await streamResponse(cls, op, client, { model: 'gpt-4o', input: 'Say it again.', previous_response_id: streamed });

    op = 'responses-new';
    await createResponse(cls, op, client, { model: 'gpt-4o', input: 'Say goodbye.' });
  } catch (err) {
    fail(`${cls} ${op}: ${err?.status ?? ''} ${err?.stack ?? err}`);
  }
}

// createResponse creates a response, prints what came back and returns its id.
async function createResponse(cls, op, client, body) {
  const { data, response } = await client.responses.create(body).withResponse();
  // output_text is the package's own: the text of the response's output_text parts, joined.
  if (data.object !== 'response' || typeof data.id !== 'string' || typeof data.output_text !== 'string') {
    fail(`${cls} ${op}: not a response: ${JSON.stringify(data)}`);
  }
  emit({
    class: cls,
    op,
    status: response.status,
    id: data.id,
    previousResponseId: data.previous_response_id ?? null,
    responseStatus: data.status,
    text: data.output_text,
    model: data.model,
    headers: failoverHeaders(response),
  });
  return data.id;
}

// streamResponse creates a streamed response, reads its events to the end, prints what came back and returns the
// id of the response in its response.completed event.
async function streamResponse(cls, op, client, body) {
  const { data: stream, response } = await client.responses.create({ ...body, stream: true }).withResponse();
  let text = '';
  const events = [];
  let completed = null;
  for await (const event of stream) {
    events.push(event.type);
    if (event.type === 'response.output_text.delta') {
      text += event.delta;
    } else if (event.type === 'response.completed') {
      completed = event.response;
    }
  }
  emit({
    class: cls,
    op,
    status: response.status,
    id: completed?.id ?? null,
    previousResponseId: completed?.previous_response_id ?? null,
    responseStatus: completed?.status ?? null,
    text,
    // The completed response's own text, to compare with the deltas.
    completedText: (completed?.output ?? [])
      .flatMap((item) => (item.type === 'message' ? item.content : []))
      .filter((part) => part.type === 'output_text')
      .map((part) => part.text)
      .join(''),
    model: completed?.model ?? null,
    events,
    headers: failoverHeaders(response),
  });
  if (completed === null) {
    fail(`${cls} ${op}: the stream ended without response.completed`);
  }
  return completed.id;
}

if (suite === 'responses') {
  for (const [cls, client] of clients) {
    await runResponses(cls, client);
  }
} else {
  for (const [cls, client] of clients) {
    await run(cls, client);
  }

  const wrong = { ...common, apiKey: `${key}-wrong` };
  await wrongKey('OpenAI', new OpenAI({ ...wrong, baseURL: `${url}/v1` }));
  await wrongKey('AzureOpenAI', new AzureOpenAI({ ...wrong, endpoint: url, apiVersion }));
}

emit({ op: 'done' });
process.exit(0);
