"""LLM judges for AlpacaEval and MT-Bench.

``prefopt.judging.api`` holds the OpenAI-compatible API judge (cached, retrying, key-safe) with
its AlpacaEval and MT-Bench front-ends. Submodules are imported explicitly so that importing the
package does not pull in the ``openai`` client.
"""
