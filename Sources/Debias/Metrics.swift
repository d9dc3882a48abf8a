import Foundation

// AFGB, UB and the neutral-text KL (definitions: ../shared/docs/method.md, Formats/eval-data.md).

/// P(he) and P(she) after one prompt.
public struct PronounProbabilities: Sendable, Equatable {
    public var he: Double
    public var she: Double
    public init(he: Double, she: Double) { self.he = he; self.she = she }
}

/// The scores of one evaluation, with the counts behind each. A mean over no prompt is nil.
public struct BiasScores: Sendable, Equatable {
    /// Mean |P(he) − P(she)| over all bias prompts (prompt-weighted).
    public var afgb: Double?
    /// The same over the bias prompts of one scale.
    public var afgbByScale: [BiasScale: Double]
    /// Mean F·(P(he) − P(she)) over the hint prompts, F = +1 male, −1 female.
    public var ub: Double?
    public var nBias: Int
    public var nByScale: [BiasScale: Int]
    public var nHint: Int
    /// Mean P(he) + P(she) over bias and hint prompts: how much pronoun mass is left.
    public var pronounMass: Double?

    /// The `--json` object: exactly afgb, afgb_word, afgb_phrase, afgb_sentence, ub, n_bias, n_hint.
    public var json: String {
        let keys: [(String, String)] = [
            ("afgb", JSONText.number(afgb)),
            ("afgb_word", JSONText.number(afgbByScale[.word])),
            ("afgb_phrase", JSONText.number(afgbByScale[.phrase])),
            ("afgb_sentence", JSONText.number(afgbByScale[.sentence])),
            ("ub", JSONText.number(ub)),
            ("n_bias", "\(nBias)"),
            ("n_hint", "\(nHint)"),
        ]
        return "{" + keys.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }
}

public enum Metrics {
    /// AFGB over a set of bias prompts: mean |P(he) − P(she)|; nil when empty.
    public static func afgb(_ probs: [PronounProbabilities]) -> Double? {
        guard !probs.isEmpty else { return nil }
        return probs.reduce(0.0) { $0 + abs($1.he - $1.she) } / Double(probs.count)
    }

    /// UB over hint prompts: mean F·(P(he) − P(she)); nil when empty.
    public static func ub(_ items: [(hint: HintGender, p: PronounProbabilities)]) -> Double? {
        guard !items.isEmpty else { return nil }
        return items.reduce(0.0) { $0 + $1.hint.sign * ($1.p.he - $1.p.she) } / Double(items.count)
    }

    /// Scores for `prompts[i]` ↔ `probs[i]`. Neutral prompts count in neither AFGB nor UB.
    public static func scores(_ prompts: [EvalPrompt], _ probs: [PronounProbabilities]) -> BiasScores {
        precondition(prompts.count == probs.count, "one probability pair per prompt")
        var bias: [PronounProbabilities] = []
        var byScale: [BiasScale: [PronounProbabilities]] = [:]
        var hints: [(hint: HintGender, p: PronounProbabilities)] = []
        var mass = 0.0, nMass = 0
        for (prompt, p) in zip(prompts, probs) {
            switch prompt.kind {
            case .bias:
                bias.append(p)
                if let s = prompt.scale { byScale[s, default: []].append(p) }
            case .hint:
                if let h = prompt.hint { hints.append((h, p)) }
            case .neutral:
                continue
            }
            mass += p.he + p.she; nMass += 1
        }
        var afgbByScale: [BiasScale: Double] = [:]
        var nByScale: [BiasScale: Int] = [:]
        for s in BiasScale.allCases {
            nByScale[s] = byScale[s]?.count ?? 0
            if let v = afgb(byScale[s] ?? []) { afgbByScale[s] = v }
        }
        return BiasScores(afgb: afgb(bias), afgbByScale: afgbByScale, ub: ub(hints), nBias: bias.count,
                          nByScale: nByScale, nHint: hints.count, pronounMass: nMass > 0 ? mass / Double(nMass) : nil)
    }

    /// KL(p ‖ q) = Σ p (log p − log q) in nats, from two log-probability rows of the same length.
    /// Terms with p = 0 contribute 0 (also when q = 0).
    public static func klDivergence(logP: UnsafeBufferPointer<Float>, logQ: UnsafeBufferPointer<Float>) -> Double {
        precondition(logP.count == logQ.count, "KL needs two distributions over the same vocabulary")
        var kl = 0.0
        for v in 0..<logP.count {
            let lp = Double(logP[v])
            if lp == -.infinity { continue }
            kl += exp(lp) * (lp - Double(logQ[v]))
        }
        return kl
    }

    public static func klDivergence(logP: [Float], logQ: [Float]) -> Double {
        logP.withUnsafeBufferPointer { p in logQ.withUnsafeBufferPointer { q in klDivergence(logP: p, logQ: q) } }
    }

    /// Mean of a list; nil when empty.
    public static func mean(_ xs: [Double]) -> Double? {
        xs.isEmpty ? nil : xs.reduce(0, +) / Double(xs.count)
    }

    /// Log-softmax of one row of logits, in Double accumulation (max-subtracted).
    public static func logSoftmax(_ logits: UnsafeBufferPointer<Float>) -> [Float] {
        var m = -Float.infinity
        for x in logits where x > m { m = x }
        var s = 0.0
        for x in logits { s += exp(Double(x - m)) }
        let lse = Float(log(s)) + m
        return logits.map { $0 - lse }
    }
}
