// Client against a real gateway (mock provider): chat, stream parsing, models, health, typed
// errors, aborting a stream; the CommonJS build; the SSE parser on its own.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";

import {
  APIConnectionError,
  APIStatusError,
  BadRequestError,
  Client,
  InternalServerError,
  NotFoundError,
  RateLimitError,
  SSEParser,
  ensureGateway,
} from "../dist/esm/index.js";
import { killGateways, stateDir as newStateDir } from "./helpers.mjs";

describe("Client", () => {
  let client;
  let dir;

  before(async () => {
    dir = newStateDir({ after: () => undefined });
    client = new Client({ baseUrl: await ensureGateway({ stateDir: dir, port: 0 }) });
  });
  after(() => killGateways(dir));

  test("chat", async () => {
    const reply = await client.chat("mock/echo", "Hello", { temperature: 0.2 });
    assert.equal(reply.object, "chat.completion");
    assert.equal(reply.choices[0].message.content, "Hello");
    assert.ok(reply.usage.total_tokens > 0);
    const listed = await client.chat("mock/echo", [
      { role: "system", content: "be brief" },
      { role: "user", content: "Hi there" },
    ]);
    assert.equal(listed.choices[0].message.content, "Hi there");
  });

  test("stream: chunks in order, usage at the end", async () => {
    const text = "Stream me, please, in several pieces";
    const stream = client.stream("mock/echo", text);
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length > 3);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), text);
    assert.ok(stream.usage && stream.usage.completion_tokens > 0);
    assert.equal(await client.stream("mock/echo", "again").text(), "again");
  });

  test("breaking out of a stream, or aborting it, closes it", async () => {
    const words = "one two three four five six seven eight nine ten";
    let seen = 0;
    const started = Date.now();
    for await (const chunk of client.stream("mock/slow", words)) {
      if (chunk.choices[0]?.delta?.content) seen++;
      if (seen === 2) break;
    }
    assert.ok(Date.now() - started < 900, "did not read the whole slow stream");

    const controller = new AbortController();
    const stream = client.stream("mock/slow", words, {}, { signal: controller.signal });
    await assert.rejects(async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) controller.abort();
      }
    }, (e) => e.name === "AbortError");
    // the gateway is fine afterwards
    assert.equal((await client.health()).status, "ok");
  });

  test("models and health", async () => {
    const models = await client.models();
    assert.ok(models.some((m) => m.id === "mock/echo"));
    const health = await client.health();
    assert.equal(health.status, "ok");
    assert.equal(typeof health.pid, "number");
  });

  test("error answers are typed errors with status and body", async () => {
    await assert.rejects(client.chat("mock/error-429", "x"), (e) => {
      assert.ok(e instanceof RateLimitError && e instanceof APIStatusError);
      assert.equal(e.status, 429);
      assert.equal(e.body.error.code, "mock_429");
      assert.equal(e.code, "mock_429");
      return true;
    });
    await assert.rejects(client.chat("nope/nothing", "x"), (e) => e instanceof NotFoundError && e.code === "model_not_found");
    // an upstream 5xx is the gateway's 502
    await assert.rejects(client.chat("mock/error-503", "x"), (e) => e instanceof InternalServerError && e.status === 502);
    await assert.rejects(client.chat("mock/echo", "x", { messages: "not a list" }), (e) => e instanceof BadRequestError);
    // a stream refused before it begins: the same errors, thrown by the iteration
    await assert.rejects(client.stream("mock/error-429", "x").text(), RateLimitError);
    await assert.rejects(client.chat("", "x"), TypeError);
    assert.throws(() => client.stream("mock/echo", 42), TypeError);
  });

  test("an error event inside a stream is a typed error, after the chunks before it", async (t) => {
    const server = createHttpServer((req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n');
      res.end('data: {"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}\n\n');
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => server.close());
    const fake = new Client(`http://127.0.0.1:${server.address().port}`);
    const seen = [];
    await assert.rejects(async () => {
      for await (const chunk of fake.stream("m", "x")) seen.push(chunk.choices[0].delta.content);
    }, (e) => e instanceof RateLimitError && e.status === 429 && e.code === "rate_limited" && e.detail === "slow down");
    assert.deepEqual(seen, ["Hi"]);
  });

  test("an unreachable gateway is an APIConnectionError", async () => {
    const port = await closedPort();
    const dead = new Client(`http://127.0.0.1:${port}/v1/`);
    assert.equal(dead.baseUrl, `http://127.0.0.1:${port}`);
    await assert.rejects(dead.health(), (e) => e instanceof APIConnectionError && /cannot reach/.test(e.message));
  });

  test("the CommonJS build works the same", async () => {
    const cjs = createRequire(import.meta.url)("../dist/cjs/index.js");
    const other = new cjs.Client({ baseUrl: client.baseUrl });
    assert.equal((await other.chat("mock/echo", "from require")).choices[0].message.content, "from require");
    await assert.rejects(other.chat("mock/error-404", "x"), cjs.NotFoundError);
  });
});

describe("SSEParser", () => {
  test("events split anywhere, any line ending, multi-line data, comments", () => {
    const raw = ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata:[DONE]\r\r";
    for (let size = 1; size <= raw.length; size++) {
      const parser = new SSEParser();
      const events = [];
      for (let i = 0; i < raw.length; i += size) events.push(...parser.feed(raw.slice(i, i + size)));
      events.push(...parser.flush());
      assert.deepEqual(events, [
        { event: "message", data: '{"a":1}' },
        { event: "x", data: "line1\nline2" },
        { event: "message", data: "[DONE]" },
      ], `split every ${size}`);
    }
  });

  test("an event not ended by a blank line is delivered by flush", () => {
    const parser = new SSEParser();
    assert.deepEqual(parser.feed("data: last"), []);
    assert.deepEqual(parser.flush(), [{ event: "message", data: "last" }]);
  });
});

function closedPort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}
