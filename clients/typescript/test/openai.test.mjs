// The official `openai` npm client pointed at the URL ensureGateway() returns.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { ensureGateway } from "../dist/esm/index.js";
import { killGateways, stateDir } from "./helpers.mjs";

let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch {
  // scripts/clients installs it; without it this test is skipped
}

test("the official openai client, pointed at ensureGateway()", { skip: !OpenAI && "openai is not installed (bash scripts/clients)" }, async (t) => {
  const dir = stateDir(t);
  const openai = new OpenAI({ baseURL: `${await ensureGateway({ stateDir: dir, port: 0 })}/v1`, apiKey: "unused", maxRetries: 0 });
  const reply = await openai.chat.completions.create({ model: "mock/echo", messages: [{ role: "user", content: "Hi" }] });
  assert.equal(reply.choices[0].message.content, "Hi");

  const stream = await openai.chat.completions.create({
    model: "mock/echo",
    messages: [{ role: "user", content: "Streamed through openai" }],
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text, "Streamed through openai");

  const models = await openai.models.list();
  assert.ok(models.data.some((m) => m.id === "mock/echo"));
  await assert.rejects(
    openai.chat.completions.create({ model: "mock/error-429", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.RateLimitError,
  );
});
after(() => undefined);
