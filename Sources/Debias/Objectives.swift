import Foundation
import LlamaModel

// Debias objectives: losses on the next-token logits z (V) after a prompt's last token.
// With p = softmax(z) and r = log P(he) − log P(she) = z_he − z_she (the normaliser cancels):
//
//   paper    (bias prompts):    L = P(he) + P(she)                           (Qin et al. 2025)
//            dL/dz_j = P(he)·[j=he] + P(she)·[j=she] − (P(he)+P(she))·p_j
//   balance  (bias prompts):    L = r²  +  w_sum · (log S − log S_base)²,   S = P(he) + P(she)
//            dr/dz = e_he − e_she;  d log S/dz_j = (P(he)·[j=he] + P(she)·[j=she]) / S − p_j
//            (the second term "keeps the sum": equalising must not delete both pronouns)
//   hint     (hint prompts):    L = w_hint · (r − r_base)²                   (keeps the hinted pronoun)
//   neutral  (neutral prompts): L = w_kl · KL(p_base ‖ p) = Σ p_base (log p_base − log p)
//            dL/dz = w_kl · (p − p_base)
//
// `base` values come from the untouched model, computed once before training.
// All sums over the vocabulary run in Double.

/// Which loss the fine-tune minimises.
public enum ObjectiveKind: String, Codable, Sendable, CaseIterable {
    /// P(he) + P(she) on bias prompts (the paper's).
    case paper
    /// (log P(he) − log P(she))² on bias prompts, plus the hint log-ratio and neutral KL terms.
    case balance
}

/// Weights of the terms of the balance objective.
public struct ObjectiveWeights: Codable, Sendable, Equatable {
    /// Hint prompts: (r − r_base)².
    public var hint: Double
    /// Neutral prompts: KL(base ‖ tuned).
    public var neutralKL: Double
    /// Bias prompts: (log S − log S_base)², S = P(he) + P(she).
    public var sum: Double

    public init(hint: Double = 1, neutralKL: Double = 1, sum: Double = 0.1) {
        self.hint = hint; self.neutralKL = neutralKL; self.sum = sum
    }
}

/// The role a training example plays in the objective.
public enum ExampleRole: String, Codable, Sendable {
    case bias, hint, neutral
}

/// What the untouched model says about one example.
public enum BaseReference {
    /// Bias: log S_base; hint: r_base.
    case scalar(Double)
    /// Neutral: the base log-probabilities (V).
    case logProbs([Float])
    case none
}

/// Numerically safe log-softmax of one row, in Double: returns (max, log Σ exp(z − max)).
@inline(__always)
func logSumExp(_ z: UnsafePointer<Float>, _ V: Int) -> Double {
    var m = -Double.infinity
    for j in 0..<V where Double(z[j]) > m { m = Double(z[j]) }
    var s = 0.0
    for j in 0..<V { s += exp(Double(z[j]) - m) }
    return m + log(s)
}

/// The debias objective over a list of training examples.
public final class DebiasObjective: LastTokenObjective {
    public let kind: ObjectiveKind
    public let weights: ObjectiveWeights
    public let heID: Int, sheID: Int
    public let roles: [ExampleRole]
    /// Filled by `setBase` before training (for the balance objective).
    public private(set) var base: [BaseReference]

    public init(kind: ObjectiveKind, weights: ObjectiveWeights = ObjectiveWeights(),
                heID: Int, sheID: Int, roles: [ExampleRole]) {
        self.kind = kind; self.weights = weights; self.heID = heID; self.sheID = sheID
        self.roles = roles
        base = Array(repeating: .none, count: roles.count)
    }

    /// Whether the objective needs the base model's logits for example i.
    public func needsBase(_ i: Int) -> Bool {
        kind == .balance && (roles[i] == .neutral || roles[i] == .hint || (roles[i] == .bias && weights.sum != 0))
    }

    /// Record the base model's logits (V) for example i.
    public func setBase(example i: Int, logits: UnsafePointer<Float>, vocabSize V: Int) {
        let lse = logSumExp(logits, V)
        switch roles[i] {
        case .bias:
            let lhe = Double(logits[heID]) - lse, lshe = Double(logits[sheID]) - lse
            base[i] = .scalar(log(exp(lhe) + exp(lshe)))
        case .hint:
            base[i] = .scalar(Double(logits[heID]) - Double(logits[sheID]))
        case .neutral:
            var lp = [Float](repeating: 0, count: V)
            for j in 0..<V { lp[j] = Float(Double(logits[j]) - lse) }
            base[i] = .logProbs(lp)
        }
    }

    public func evaluate(logits z: UnsafePointer<Float>, vocabSize V: Int, example i: Int,
                         dlogits: UnsafeMutablePointer<Float>?) -> Double {
        dlogits?.update(repeating: 0, count: V)
        let lse = logSumExp(z, V)
        let phe = exp(Double(z[heID]) - lse), pshe = exp(Double(z[sheID]) - lse)
        switch (kind, roles[i]) {
        case (.paper, .bias):
            // L = P(he) + P(she)
            let S = phe + pshe
            if let d = dlogits {
                for j in 0..<V { d[j] = Float(-S * exp(Double(z[j]) - lse)) }
                d[heID] += Float(phe); d[sheID] += Float(pshe)
            }
            return S
        case (.paper, _):
            return 0   // the paper's loss reads bias prompts only
        case (.balance, .bias):
            let r = Double(z[heID]) - Double(z[sheID])
            var L = r * r
            let g = 2 * r
            if weights.sum != 0, case .scalar(let logSBase) = base[i] {
                let S = phe + pshe, e = log(S) - logSBase
                L += weights.sum * e * e
                if let d = dlogits {
                    let c = weights.sum * 2 * e
                    for j in 0..<V { d[j] = Float(-c * exp(Double(z[j]) - lse)) }
                    d[heID] += Float(c * phe / S); d[sheID] += Float(c * pshe / S)
                }
            }
            if let d = dlogits { d[heID] += Float(g); d[sheID] -= Float(g) }
            return L
        case (.balance, .hint):
            guard case .scalar(let rBase) = base[i] else { return 0 }
            let e = (Double(z[heID]) - Double(z[sheID])) - rBase
            if let d = dlogits {
                let g = weights.hint * 2 * e
                d[heID] += Float(g); d[sheID] -= Float(g)
            }
            return weights.hint * e * e
        case (.balance, .neutral):
            guard case .logProbs(let lpb) = base[i] else { return 0 }
            var kl = 0.0
            lpb.withUnsafeBufferPointer { b in
                for j in 0..<V {
                    let lb = Double(b[j]), lt = Double(z[j]) - lse
                    let pb = exp(lb)
                    kl += pb * (lb - lt)
                    if let d = dlogits { d[j] = Float(weights.neutralKL * (exp(lt) - pb)) }
                }
            }
            return weights.neutralKL * kl
        }
    }
}

/// KL(p ‖ q) of two next-token distributions given as logits (V), in nats.
public func klDivergence(baseLogits p: UnsafePointer<Float>, logits q: UnsafePointer<Float>, vocabSize V: Int) -> Double {
    let lp = logSumExp(p, V), lq = logSumExp(q, V)
    var kl = 0.0
    for j in 0..<V {
        let a = Double(p[j]) - lp, b = Double(q[j]) - lq
        kl += exp(a) * (a - b)
    }
    return max(kl, 0)
}
