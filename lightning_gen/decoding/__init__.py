"""The decoding core: Hugging Face's `generate` semantics for any torch model. Imports torch and transformers,
never Lightning. Modules with a leading underscore are internals (the exact sampling shortcuts)."""
