/**
 * `Client`: chat, stream, models and health against a mini-llm gateway, on Node's own `fetch`.
 * Error answers throw the typed errors of errors.ts; a stream is an async iterator of chunks.
 */

import {
  APIConnectionError,
  APITimeoutError,
  MiniLLMError,
  statusError,
} from "./errors.js";
import { ensureGateway, gatewayPaths, type GatewayOptions, type Health } from "./gateway.js";
import { SSEParser } from "./sse.js";
import { readState } from "./state.js";
import type { ChatCompletion, ChatCompletionChunk, ChatParams, Messages, Model, Usage } from "./types.js";

export const DEFAULT_URL = "http://127.0.0.1:3333";
const START_HINT = "start it with `mini-llm start`, or use `await Client.auto()`";

// error types of an error event inside a stream (which has no HTTP status of its own)
const STREAM_ERROR_STATUS: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  rate_limit_error: 429,
  timeout_error: 504,
};

export interface ClientOptions {
  /** `http://host:port` (a trailing `/v1` is ignored). Unset: `$MINI_LLM_BASE_URL`, else the
   * published shared gateway's URL (not checked), else `http://127.0.0.1:3333`. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer …` (when the gateway asks for client keys). */
  apiKey?: string;
  headers?: Record<string, string>;
  /** Without a byte from the gateway for this long, a call fails with `APITimeoutError`
   * (default 600 000 ms); a stream's clock restarts with every piece it receives. */
  timeoutMs?: number;
}

export interface RequestOptions {
  /** Aborting it cancels the request, or closes the stream. */
  signal?: AbortSignal;
}

export class Client {
  readonly baseUrl: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions | string = {}) {
    const opts = typeof options === "string" ? { baseUrl: options } : options;
    this.baseUrl = normalizeBaseUrl(opts.baseUrl ?? defaultBaseUrl());
    let url: URL;
    try {
      url = new URL(this.baseUrl);
    } catch {
      throw new MiniLLMError(`base URL must be http(s)://host[:port], got ${JSON.stringify(opts.baseUrl)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new MiniLLMError(`base URL must be http(s)://host[:port], got ${JSON.stringify(opts.baseUrl)}`);
    }
    this.timeoutMs = opts.timeoutMs ?? 600_000;
    this.headers = { "content-type": "application/json", "user-agent": "mini-llm-node/0.1.0" };
    if (opts.apiKey) this.headers.authorization = `Bearer ${opts.apiKey}`;
    Object.assign(this.headers, opts.headers);
  }

  /** A client of the shared gateway, found or started by `ensureGateway(options)`. */
  static async auto(options: GatewayOptions & Omit<ClientOptions, "baseUrl"> = {}): Promise<Client> {
    const { apiKey, headers, timeoutMs, ...gateway } = options;
    const client: ClientOptions = { baseUrl: await ensureGateway(gateway) };
    if (apiKey !== undefined) client.apiKey = apiKey;
    if (headers !== undefined) client.headers = headers;
    if (timeoutMs !== undefined) client.timeoutMs = timeoutMs;
    return new Client(client);
  }

  /** One chat completion; `params` (temperature, max_tokens, tools…) pass through. */
  async chat(
    model: string,
    messages: Messages,
    params: ChatParams = {},
    options: RequestOptions = {},
  ): Promise<ChatCompletion> {
    const body = chatBody(model, messages, params, false);
    return JSON.parse(await this.call("POST", "/v1/chat/completions", body, options)) as ChatCompletion;
  }

  /** A streamed chat completion: `for await (const chunk of client.stream(...))`. The request is
   * sent when iteration begins; leaving the loop (or `close()`) closes the connection. The
   * gateway is asked for usage (`stream_options.include_usage`) unless `params` say otherwise. */
  stream(
    model: string,
    messages: Messages,
    params: ChatParams = {},
    options: RequestOptions = {},
  ): ChatStream {
    const body = chatBody(model, messages, params, true);
    return new ChatStream((signal) => this.open("POST", "/v1/chat/completions", body, signal), this.timeoutMs, options.signal);
  }

  async models(options: RequestOptions = {}): Promise<Model[]> {
    const list = JSON.parse(await this.call("GET", "/v1/models", undefined, options)) as { data: Model[] };
    return list.data;
  }

  async health(options: RequestOptions = {}): Promise<Health> {
    return JSON.parse(await this.call("GET", "/health", undefined, options)) as Health;
  }

  private async call(method: string, path: string, body: string | undefined, options: RequestOptions): Promise<string> {
    const watch = new Watchdog(this.timeoutMs, options.signal);
    try {
      const response = await this.open(method, path, body, watch.signal);
      watch.touch();
      const text = await response.text();
      if (response.status >= 400) throw statusError(response.status, text);
      return text;
    } catch (e) {
      throw watch.translate(e, this.baseUrl);
    } finally {
      watch.done();
    }
  }

  /** Send a request; the response when its status is 2xx, else the typed error. */
  private async open(method: string, path: string, body: string | undefined, signal: AbortSignal): Promise<Response> {
    let response: Response;
    try {
      const init: RequestInit = { method, headers: this.headers, signal };
      if (body !== undefined) init.body = body;
      response = await fetch(this.baseUrl + path, init);
    } catch (e) {
      if (signal.aborted) throw e;
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new APIConnectionError(`cannot reach the gateway at ${this.baseUrl}: ${cause} (${START_HINT})`, { cause: e });
    }
    if (response.status >= 400) throw statusError(response.status, await response.text());
    return response;
  }
}

/** An async iterator over a stream's chunks; `usage` is set once the usage chunk has come. */
export class ChatStream implements AsyncIterable<ChatCompletionChunk> {
  usage: Usage | null = null;
  private readonly controller = new AbortController();
  private started = false;

  constructor(
    private readonly open: (signal: AbortSignal) => Promise<Response>,
    private readonly timeoutMs: number,
    private readonly signal?: AbortSignal,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    if (this.started) throw new MiniLLMError("a stream can be iterated only once");
    this.started = true;
    return this.chunks();
  }

  /** The text of every chunk not read yet, joined. */
  async text(): Promise<string> {
    let text = "";
    for await (const chunk of this) text += chunk.choices[0]?.delta?.content ?? "";
    return text;
  }

  /** Close the connection (also what leaving a `for await` loop does). */
  close(): void {
    this.controller.abort();
  }

  private async *chunks(): AsyncGenerator<ChatCompletionChunk> {
    const watch = new Watchdog(this.timeoutMs, this.signal, this.controller.signal);
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      const response = await this.open(watch.signal);
      if (!response.body) return;
      reader = response.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SSEParser();
      for (;;) {
        watch.touch();
        const { done, value } = await reader.read();
        const events = done
          ? [...parser.feed(decoder.decode()), ...parser.flush()]
          : parser.feed(decoder.decode(value, { stream: true }));
        for (const event of events) {
          if (!event.data) continue;
          if (event.data === "[DONE]") return;
          const chunk = decodeChunk(event.data);
          if (chunk.usage) this.usage = chunk.usage;
          yield chunk;
        }
        if (done) return;
      }
    } catch (e) {
      throw watch.translate(e, "the gateway", "the stream broke");
    } finally {
      watch.done();
      if (reader) reader.cancel().catch(() => undefined);
      else this.controller.abort();
    }
  }
}

function decodeChunk(data: string): ChatCompletionChunk {
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch (e) {
    throw new MiniLLMError(`unexpected event from the gateway: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== "object") throw new MiniLLMError(`unexpected event from the gateway: ${data}`);
  const record = raw as Record<string, unknown>;
  if ("error" in record && !("choices" in record)) {
    const error = record.error !== null && typeof record.error === "object" ? (record.error as Record<string, unknown>) : {};
    throw statusError(STREAM_ERROR_STATUS[String(error.type)] ?? 502, record);
  }
  if (!Array.isArray(record.choices)) throw new MiniLLMError(`unexpected event from the gateway: ${data}`);
  return record as unknown as ChatCompletionChunk;
}

/** Aborts a request after `timeoutMs` without progress, or when the caller's signal aborts; and
 * turns the resulting abort into the right error. */
class Watchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timedOut = false;
  private readonly unlink: Array<() => void> = [];

  constructor(private readonly timeoutMs: number, ...signals: Array<AbortSignal | undefined>) {
    for (const signal of signals) {
      if (!signal) continue;
      if (signal.aborted) this.controller.abort(signal.reason);
      const abort = () => this.controller.abort(signal.reason);
      signal.addEventListener("abort", abort, { once: true });
      this.unlink.push(() => signal.removeEventListener("abort", abort));
    }
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.timeoutMs);
    this.timer.unref();
  }

  done(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const unlink of this.unlink) unlink();
  }

  translate(e: unknown, where: string, broke = "lost the connection"): unknown {
    if (e instanceof MiniLLMError) return e;
    if (this.timedOut) return new APITimeoutError(`${where} did not answer within ${this.timeoutMs / 1000} s`, { cause: e });
    if (this.controller.signal.aborted) return e; // the caller aborted: its own reason
    return new APIConnectionError(`${broke}: ${(e as Error).message}`, { cause: e });
  }
}

function chatBody(model: string, messages: Messages, params: ChatParams, stream: boolean): string {
  if (typeof model !== "string" || !model) {
    throw new TypeError(`model must be a model name such as "mock/echo", not ${JSON.stringify(model)}`);
  }
  let list: unknown = messages;
  if (typeof messages === "string") list = [{ role: "user", content: messages }];
  if (!Array.isArray(list) || list.some((m) => m === null || typeof m !== "object" || Array.isArray(m))) {
    throw new TypeError(
      'messages must be a string (one user message) or an array of message objects such as { role: "user", content: "Hello" }',
    );
  }
  const body: Record<string, unknown> = { model, messages: list, ...params, stream };
  if (stream && !("stream_options" in params)) body.stream_options = { include_usage: true };
  return JSON.stringify(body);
}

/** `http://host:port[/prefix]` without a trailing slash or `/v1`. */
export function normalizeBaseUrl(url: string): string {
  const trimmed = url.replace(/\/+$/, "");
  return trimmed.endsWith("/v1") ? trimmed.slice(0, -3) : trimmed;
}

function defaultBaseUrl(): string {
  if (process.env.MINI_LLM_BASE_URL) return process.env.MINI_LLM_BASE_URL;
  return readState(gatewayPaths().stateFile)?.url ?? DEFAULT_URL;
}
