"""Generation: answers to the AlpacaEval prompts and MT-Bench questions, by our Hugging Face
decoding loop (`engine`) or by vLLM on a GPU (`vllm_engine`), in one file format."""
