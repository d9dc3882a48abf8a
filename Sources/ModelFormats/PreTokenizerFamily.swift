// What a GGUF `tokenizer.ggml.pre` value means: which split-pattern family llama.cpp uses for
// it (src/llama-vocab.cpp), and the regex an HF tokenizer.json spells that family with.
// Tokenizer maps each family to its hand-written scanner; ModelFormats writes tokenizer.json
// from it (`convert`). One table, so the two cannot disagree about a name.

public enum PreTokenizerFamily: String, Sendable, CaseIterable {
    /// Digits one by one, then GPT-2's pattern (HF: Digits(individual) + ByteLevel(use_regex)).
    case smollm
    /// GPT-2's pattern (HF: ByteLevel(use_regex)).
    case gpt2
    /// The llama3 pattern, numbers in runs of up to three digits.
    case llama3
    /// The llama3 pattern with one digit per piece.
    case qwen2
    /// Punctuation runs, GPT-2's pattern, three-digit groups.
    case falcon
    /// llama.cpp's default: punctuation runs, GPT-2's pattern, digit runs, three-digit groups.
    case llamaCppDefault = "default"

    static let table: [(PreTokenizerFamily, [String])] = [
        (.smollm, ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"]),
        (.gpt2, ["gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "jina-es", "jina-de",
                 "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4",
                 "jina-v1-en", "jina-v2-code", "roberta-bpe"]),
        (.llama3, ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                   "jina-v5-nano", "dbrx", "smaug-bpe", "glm4", "chatglm-bpe"]),
        (.qwen2, ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "megrez", "hunyuan", "solar-open", "grok-2"]),
        (.falcon, ["falcon"]),
        (.llamaCppDefault, ["default"]),
    ]

    /// The family of a `tokenizer.ggml.pre` value (nil or empty means llama.cpp's "default");
    /// nil for a name llama.cpp knows and we do not.
    public static func named(_ pre: String?) -> PreTokenizerFamily? {
        let name = (pre?.isEmpty ?? true) ? "default" : pre!
        return table.first { $0.1.contains(name) }?.0
    }

    /// Every `tokenizer.ggml.pre` value understood, in table order.
    public static var supportedNames: [String] { table.flatMap { $0.1 } }

    /// Pre values for which llama.cpp merges whole pre-tokens found in the vocabulary directly
    /// (HF `ignore_merges`) and adds BOS unless the file says otherwise.
    public static let ignoresMerges: Set<String> = ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                                    "midm-2.0", "lfm2", "jina-v5-nano"]

    /// The split regexes, exactly as HF tokenizer.json files write them.
    public enum Regex {
        public static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        /// GPT-2's pattern as some files write it, without the final \s+ (same pieces).
        public static let gpt2Short = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#
        public static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        public static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    }
}
