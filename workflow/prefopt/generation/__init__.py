"""Generation: answers to the AlpacaEval prompts and MT-Bench questions, by our Hugging Face
decoding loop (`hf_engine`) or by vLLM on a GPU (`vllm_engine`), in one file format.

`answers` holds the entry points (`load_engine`, `generate_alpaca_eval`, `generate_mt_bench`)
and is the only module that imports both engines; the engines share `interface` (the engine
protocol, per-answer seeds, chat-template prompts, stop tokens) and never import each other."""
