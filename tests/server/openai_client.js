// Talks to a running `mox serve` with the official OpenAI client (npm `openai`), as a user's
// program would, and prints one JSON object with what came back (checked by
// tests/server/openai_client_test.cpp).
//   node openai_client.js OPENAI_MODULE_DIR BASE_URL KEY REVOKED_KEY SMALL_QUOTA_KEY MODEL
const [moduleDir, baseURL, key, revokedKey, smallKey, model] = process.argv.slice(2);
const { OpenAI } = require(moduleDir);

async function errorOf(promise) {
  try {
    await promise;
    return { status: 0 };
  } catch (e) {
    return { status: e.status ?? -1, name: e.constructor.name, code: e.code ?? null, param: e.param ?? null,
             message: e.message, retryAfter: e.headers ? e.headers['retry-after'] ?? null : null };
  }
}

(async () => {
  const client = new OpenAI({ apiKey: key, baseURL, maxRetries: 0, timeout: 60000 });
  const out = {};

  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);

  const c = await client.completions.create({ model, prompt: 'User: what is 5?', max_tokens: 10, temperature: 0 });
  out.completion = { text: c.choices[0].text, finish: c.choices[0].finish_reason, usage: c.usage, object: c.object };

  const chat = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'what is 5?' }], max_tokens: 8, temperature: 0 });
  out.chat = { content: chat.choices[0].message.content, role: chat.choices[0].message.role, usage: chat.usage,
               finish: chat.choices[0].finish_reason };

  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'what is 5?' }], max_tokens: 8, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  let streamed = '';
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length > 0 && chunk.choices[0].delta.content) streamed += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  out.stream = { text: streamed, chunks, usage };

  const cstream = await client.completions.create({ model, prompt: 'User: what is 5?', max_tokens: 10, temperature: 0,
                                                    stream: true });
  let ctext = '';
  for await (const chunk of cstream) ctext += chunk.choices[0].text;
  out.completionStream = { text: ctext };

  out.revoked = await errorOf(new OpenAI({ apiKey: revokedKey, baseURL, maxRetries: 0 }).completions.create(
      { model, prompt: 'x', max_tokens: 2 }));
  const small = new OpenAI({ apiKey: smallKey, baseURL, maxRetries: 0 });
  out.quotaFirst = await errorOf(small.completions.create({ model, prompt: 'User:', max_tokens: 10 }));
  out.quotaSecond = await errorOf(small.completions.create({ model, prompt: 'User:', max_tokens: 30 }));
  out.unknownModel = await errorOf(client.completions.create({ model: 'no-such-model', prompt: 'x' }));
  out.badParam = await errorOf(client.completions.create({ model, prompt: 'x', temperature: 7 }));
  out.tooLong = await errorOf(client.completions.create({ model, prompt: 'x', max_tokens: 100000 }));
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error('openai_client.js: ' + (e.stack || e));
  process.exit(1);
});
