// Debias module.
import LlamaModel

// MARK: - Small-data mode: a seeded, stratified subset of every split

/// `create --max-prompts N`: at most N prompts of each kind (bias, hint, neutral) in each split,
/// for a big model on a small machine (a 7B forward runs at a few tokens per second on 2 cores).
///
/// The rule, so that a subset can be reproduced and described in a patch:
///   - groups are (split, kind); a group of at most N prompts is kept whole;
///   - within a group, strata are the template (the data's "template" field when present,
///     else nothing) crossed with the scale (bias) or the hint gender (hint), so every template
///     and scale keeps its share;
///   - N is divided among the strata in proportion to their sizes, by largest remainder (ties:
///     the stratum seen first in the file), so the subset has exactly N prompts;
///   - within a stratum the prompts are shuffled by SplitMix64 (`ExampleOrderRNG`) seeded with
///     `seed` mixed with the group's and the stratum's names (FNV-1a), and the first ones kept:
///     professions are drawn at random, and a group's subset depends on nothing but the seed,
///     its own prompts and N;
///   - the result keeps the input order.
public enum PromptSubset {
    /// What was kept of one (split, kind) group.
    public struct Group: Sendable, Equatable {
        public var split: String
        public var kind: PromptKind
        public var kept: Int
        public var available: Int
        public var strata: Int
    }

    /// The stratum of a prompt within its (split, kind) group.
    public static func stratum(of p: EvalPrompt) -> String {
        let template = p.extra.first { $0.key == "template" }?.rawJSON ?? ""
        switch p.kind {
        case .bias: return (p.scale?.rawValue ?? "") + "|" + template
        case .hint: return (p.hint?.rawValue ?? "") + "|" + template
        case .neutral: return template
        }
    }

    /// At most `maxPerGroup` prompts of each (split, kind), chosen by the rule above.
    /// Prompts without a split form their own group ("none").
    public static func select(_ prompts: [EvalPrompt], maxPerGroup n: Int, seed: UInt64) -> (prompts: [EvalPrompt], groups: [Group]) {
        precondition(n >= 1)
        // groups in first-appearance order, strata likewise
        var groupOrder: [String] = []
        var groups: [String: (split: String, kind: PromptKind, strataOrder: [String], strata: [String: [Int]])] = [:]
        for (i, p) in prompts.enumerated() {
            let split = p.split?.rawValue ?? "none"
            let g = split + "/" + p.kind.rawValue
            if groups[g] == nil { groups[g] = (split, p.kind, [], [:]); groupOrder.append(g) }
            let s = stratum(of: p)
            if groups[g]!.strata[s] == nil { groups[g]!.strataOrder.append(s); groups[g]!.strata[s] = [] }
            groups[g]!.strata[s]!.append(i)
        }
        var keep: [Int] = []
        var report: [Group] = []
        for g in groupOrder {
            let grp = groups[g]!
            let total = grp.strata.values.reduce(0) { $0 + $1.count }
            report.append(Group(split: grp.split, kind: grp.kind, kept: min(n, total), available: total, strata: grp.strataOrder.count))
            if total <= n {
                for s in grp.strataOrder { keep += grp.strata[s]! }
                continue
            }
            // largest-remainder allocation of n over the strata
            var quota = grp.strataOrder.map { grp.strata[$0]!.count * n / total }
            let remainders = grp.strataOrder.enumerated().map { (i, s) in (i, grp.strata[s]!.count * n % total) }
            var left = n - quota.reduce(0, +)
            for (i, _) in remainders.sorted(by: { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }) where left > 0 {
                quota[i] += 1; left -= 1
            }
            for (si, s) in grp.strataOrder.enumerated() where quota[si] > 0 {
                var idx = grp.strata[s]!
                var rng = ExampleOrderRNG(seed: seed ^ fnv1a(g + "#" + s))
                rng.shuffle(&idx)
                keep += idx.prefix(quota[si])
            }
        }
        keep.sort()
        return (keep.map { prompts[$0] }, report)
    }

    /// FNV-1a 64 of a string's UTF-8 bytes (a fixed, platform-independent hash).
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}
