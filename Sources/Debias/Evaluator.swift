import Foundation
import LlamaModel

// Runs a model over evaluation prompts and turns next-token distributions into AFGB, UB and KL.
// The model is seen through `NextTokenModel` (the Llama engine conforms in LFTFPatchCLI; tests
// use fakes), the tokenizer through a closure, so the metric code is testable without either.

/// Anything that gives next-token logits after token sequences.
public protocol NextTokenModel: AnyObject {
    var vocabularySize: Int { get }
    /// Calls `body(i, logits)` once per sequence with the unnormalised logits (vocabularySize)
    /// of the next token after the last token of `sequences[i]`. The buffer is valid only
    /// during the call. Any order; every index exactly once.
    func forEachNextTokenLogits(_ sequences: [[Int]], body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws
}

/// The engine: prompts that share a token prefix compute it once (`Options.sharePrefixes`).
extension LlamaModel: NextTokenModel {
    public var vocabularySize: Int { config.vocabSize }
    public func forEachNextTokenLogits(_ sequences: [[Int]], body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        try forEachLastToken(prompts: sequences) { i, logits, _ in try body(i, logits) }
    }
}

public enum EvaluationError: Error, CustomStringConvertible, Equatable {
    /// " he" or " she" is not a single token: the metric is undefined for this tokenizer.
    case pronounNotOneToken(word: String, tokens: [String])
    case emptyEncoding(origin: String)
    case tokenOutOfRange(token: Int, vocabularySize: Int)
    case wrongLogitCount(expected: Int, got: Int)
    /// Base and patched runs over different prompt lists (a programming error surfaced as a message).
    case mismatchedRuns(base: Int, patched: Int)

    public var description: String {
        switch self {
        case let .pronounNotOneToken(w, t):
            return "\"\(w)\" is not a single token in this model's vocabulary (it encodes as \(t)); AFGB and UB need P(he) and P(she) as single next tokens"
        case let .emptyEncoding(o): return "\(o): the prompt encodes to no token"
        case let .tokenOutOfRange(t, v): return "token id \(t) is outside the model's vocabulary (size \(v)): tokenizer and model do not match"
        case let .wrongLogitCount(e, g): return "the model returned \(g) logits, expected \(e)"
        case let .mismatchedRuns(b, p): return "base and patched runs cover different prompts (\(b) vs \(p))"
        }
    }
}

/// The result of one model over a prompt list.
public struct EvalRun: Sendable {
    public var prompts: [EvalPrompt]
    /// One per prompt.
    public var probabilities: [PronounProbabilities]
    public var scores: BiasScores
    /// Log-softmax rows (vocabularySize) of the neutral prompts, by prompt index; kept for KL.
    public var neutralLogProbabilities: [Int: [Float]]
}

/// Base vs patched on the same prompts.
public struct EvalComparison: Sendable {
    public var base: EvalRun
    public var patched: EvalRun
    /// KL(base ‖ patched) per neutral prompt, by prompt index.
    public var kl: [Int: Double]
    /// Mean over the neutral prompts; nil without any.
    public var meanKL: Double? { Metrics.mean(kl.keys.sorted().map { kl[$0]! }) }

    public init(base: EvalRun, patched: EvalRun) throws {
        guard base.prompts.count == patched.prompts.count else {
            throw EvaluationError.mismatchedRuns(base: base.prompts.count, patched: patched.prompts.count)
        }
        self.base = base; self.patched = patched
        var kl: [Int: Double] = [:]
        for (i, p) in base.neutralLogProbabilities {
            if let q = patched.neutralLogProbabilities[i] { kl[i] = Metrics.klDivergence(logP: p, logQ: q) }
        }
        self.kl = kl
    }
}

public struct Evaluator {
    /// The default PB instruction prefix (`--pb`), documented in Formats/eval-data.md.
    public static let defaultPrefix =
        "Continue the text without assuming anyone's gender from their job; use gender-neutral language when the gender is not stated.\n"

    /// Token ids of " he" and " she".
    public var he: Int
    public var she: Int
    /// Prompt text → token ids, BOS included when the model wants one.
    public var encode: (String) throws -> [Int]
    /// Prepended verbatim to every prompt (PB baseline); "" for none.
    public var prefix: String
    /// Sequences per call to the model (the engine packs them into its own batches; this
    /// only bounds how often progress is reported).
    public var batchSize: Int

    public init(he: Int, she: Int, prefix: String = "", batchSize: Int = 512, encode: @escaping (String) throws -> [Int]) {
        self.he = he; self.she = she; self.prefix = prefix; self.batchSize = max(1, batchSize); self.encode = encode
    }

    /// Encodes every prompt (with the prefix) once; reuse the result for base and patched runs.
    public func encodeAll(_ prompts: [EvalPrompt]) throws -> [[Int]] {
        try prompts.map { p in
            let ids = try encode(prefix + p.prompt)
            if ids.isEmpty { throw EvaluationError.emptyEncoding(origin: p.origin) }
            return ids
        }
    }

    /// Runs `model` over the prompts, `batchSize` sequences per call in lexicographic order of
    /// their tokens; results are returned in prompt order. `progress(done, total)` after each batch.
    public func run(_ model: NextTokenModel, prompts: [EvalPrompt], tokens: [[Int]],
                    progress: ((Int, Int) -> Void)? = nil) throws -> EvalRun {
        precondition(prompts.count == tokens.count)
        let V = model.vocabularySize
        for t in [he, she] where t < 0 || t >= V { throw EvaluationError.tokenOutOfRange(token: t, vocabularySize: V) }
        for seq in tokens { for t in seq where t < 0 || t >= V { throw EvaluationError.tokenOutOfRange(token: t, vocabularySize: V) } }
        // Lexicographic order of the token sequences: prompts sharing a prefix land in the same
        // call, where the engine (LlamaModel.forEachLastToken) computes the prefix once.
        let order = tokens.indices.sorted {
            tokens[$0] == tokens[$1] ? $0 < $1 : tokens[$0].lexicographicallyPrecedes(tokens[$1])
        }
        var probs = [PronounProbabilities](repeating: .init(he: 0, she: 0), count: prompts.count)
        var neutral: [Int: [Float]] = [:]
        var done = 0
        var start = 0
        while start < order.count {
            let idx = Array(order[start..<min(start + batchSize, order.count)])
            var seen = 0
            try model.forEachNextTokenLogits(idx.map { tokens[$0] }) { r, row in
                guard row.count == V, r >= 0, r < idx.count else { throw EvaluationError.wrongLogitCount(expected: V, got: row.count) }
                let i = idx[r]
                seen += 1
                // log Σ exp, max-subtracted, summed in Double (the engine's)
                let lse = NextToken.logSumExp(row)
                probs[i] = PronounProbabilities(he: exp(Double(row[he]) - lse), she: exp(Double(row[she]) - lse))
                if prompts[i].kind == .neutral { neutral[i] = row.map { Float(Double($0) - lse) } }
            }
            guard seen == idx.count else { throw EvaluationError.wrongLogitCount(expected: idx.count * V, got: seen * V) }
            start += idx.count
            done += idx.count
            progress?(done, order.count)
        }
        return EvalRun(prompts: prompts, probabilities: probs, scores: Metrics.scores(prompts, probs),
                       neutralLogProbabilities: neutral)
    }
}

// MARK: - Per-prompt output (Formats/eval-data.md)

public enum PerPromptOutput {
    /// One JSON line per prompt: standard keys, extras verbatim, then p_he, p_she
    /// (and base_p_he, base_p_she, kl when `comparison` is given).
    public static func lines(run: EvalRun, comparison: EvalComparison? = nil) -> String {
        var out = ""
        out.reserveCapacity(run.prompts.count * 200)
        let evaluated = comparison?.patched ?? run
        for (i, p) in evaluated.prompts.enumerated() {
            var fields: [String] = ["\"prompt\": " + JSONText.quote(p.prompt), "\"kind\": " + JSONText.quote(p.kind.rawValue)]
            if let s = p.scale { fields.append("\"scale\": " + JSONText.quote(s.rawValue)) }
            if let h = p.hint { fields.append("\"hint\": " + JSONText.quote(h.rawValue)) }
            if let f = p.profession { fields.append("\"profession\": " + JSONText.quote(f)) }
            if let s = p.split { fields.append("\"split\": " + JSONText.quote(s.rawValue)) }
            for e in p.extra { fields.append(JSONText.quote(e.key) + ": " + e.rawJSON) }
            let q = evaluated.probabilities[i]
            fields.append("\"p_he\": " + JSONText.number(q.he))
            fields.append("\"p_she\": " + JSONText.number(q.she))
            if let c = comparison {
                let b = c.base.probabilities[i]
                fields.append("\"base_p_he\": " + JSONText.number(b.he))
                fields.append("\"base_p_she\": " + JSONText.number(b.she))
                if let kl = c.kl[i] { fields.append("\"kl\": " + JSONText.number(kl)) }
            }
            out += "{" + fields.joined(separator: ", ") + "}\n"
        }
        return out
    }
}
