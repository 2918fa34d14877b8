/** The shapes the gateway answers with (OpenAI's), as far as this client reads them. Fields it
 * does not name are kept: every object carries whatever else the gateway sent. */

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool" | (string & {});
  content: string | null | Array<Record<string, unknown>>;
  [field: string]: unknown;
}

/** A list of messages, or a plain string meaning one user message. */
export type Messages = string | ChatMessage[];

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [field: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: ChatMessage;
    finish_reason: string | null;
    [field: string]: unknown;
  }>;
  usage?: Usage;
  [field: string]: unknown;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string | null; [field: string]: unknown };
    finish_reason: string | null;
    [field: string]: unknown;
  }>;
  usage?: Usage | null;
  [field: string]: unknown;
}

export interface Model {
  id: string;
  object: "model";
  owned_by?: string;
  [field: string]: unknown;
}

/** Request parameters passed through as they are (`temperature`, `max_tokens`, `tools`...). */
export type ChatParams = Record<string, unknown>;
