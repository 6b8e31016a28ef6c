"""API models (GPT-4o, GPT-4o mini, Gemini, any OpenAI-compatible server): no weights, a
provider's HTTP API behind the same task methods as local models.

Modules: base (the model object every provider shares), retry (one retry loop), usage (tokens
and cost), and one module per wire format: openai (also OpenAI-compatible servers), gemini.
Importing this package imports no SDK.
"""
