"""Client dialects <-> canonical (OpenAI chat) form, pure: the Anthropic `/v1/messages` edge."""
