// LlamaModel module.
