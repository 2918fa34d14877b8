/**
 * mini-llm-client: find or start the one shared local mini-llm gateway, and talk to it.
 *
 *     import { Client, ensureGateway } from "mini-llm-client";
 *     const client = await Client.auto();          // finds the shared gateway, or starts it
 *     const reply = await client.chat("mock/echo", "Hello");
 */

export { ChatStream, Client, DEFAULT_URL, normalizeBaseUrl } from "./client.js";
export type { ClientOptions, RequestOptions } from "./client.js";
export {
  APIConnectionError,
  APIStatusError,
  APITimeoutError,
  AuthenticationError,
  BadRequestError,
  GatewayConfigError,
  GatewayStartError,
  GatewayVersionError,
  InternalServerError,
  MiniLLMError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
} from "./errors.js";
export {
  ensureGateway,
  ensureGatewayState,
  fetchHealth,
  findGateway,
  findPython,
  gatewayPaths,
  stopGateway,
  superviseGateway,
} from "./gateway.js";
export type {
  FoundGateway,
  GatewayOptions,
  GatewayPaths,
  Health,
  SuperviseOptions,
  Supervisor,
  VersionPolicy,
} from "./gateway.js";
export { SSEParser } from "./sse.js";
export type { SSEEvent } from "./sse.js";
export { defaultStateDir, readState } from "./state.js";
export type { GatewayState } from "./state.js";
export type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatMessage,
  ChatParams,
  Messages,
  Model,
  Usage,
} from "./types.js";
