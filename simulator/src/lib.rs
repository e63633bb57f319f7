//! The provider simulator: an HTTP server speaking the OpenAI, Anthropic and
//! Gemini APIs, answering from recorded rating files or a seeded generator,
//! enforcing rate limits and injecting faults.
