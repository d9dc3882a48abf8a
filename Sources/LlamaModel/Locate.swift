import Foundation
import ModelFormats

// Locating the block to fine-tune.
//
// BMI_i = 1 − cos(h_i, h_{i+1}) at the last token, averaged over prompts, with h_i the residual
// stream entering block i and h_{i+1} the one leaving it (LFTF, Qin et al. 2025).
//
// On small models the first block rewrites the token embedding whatever the text (SmolLM2-135M:
// BMI_0 ≈ 0.93 on bias prompts and 0.86–1.12 on text with no person in it), so plain BMI ranks
// block 0 first for reasons unrelated to gender. The `contrast` locator subtracts the BMI the
// same block shows on neutral text: it ranks blocks by how much MORE they rewrite the residual
// stream on the gendered prompts than on text with no person in it.

/// How blocks are ranked.
public enum Locator: String, Codable, Sendable, CaseIterable {
    /// BMI on the bias prompts (the paper's).
    case bmi
    /// BMI on the bias prompts minus BMI on neutral prompts.
    case contrast
}

/// The result of locating: per-block scores and the ranking, highest first.
public struct BlockRanking: Codable, Sendable, Equatable {
    public var locator: Locator
    /// Per block: the score the ranking uses.
    public var scores: [Double]
    /// Per block: mean 1 − cos on the bias prompts.
    public var bmi: [Double]
    /// Per block: mean 1 − cos on the neutral prompts (contrast locator only).
    public var neutralBMI: [Double]?
    /// Blocks, highest score first (ties: lower index first).
    public var ranking: [Int]
    public var biasPromptCount: Int
    public var neutralPromptCount: Int

    /// The block to fine-tune.
    public var top: Int { ranking[0] }

    public init(locator: Locator, bmi: [Double], neutralBMI: [Double]?, biasPromptCount: Int, neutralPromptCount: Int) {
        self.locator = locator
        self.bmi = bmi
        self.neutralBMI = neutralBMI
        if locator == .contrast, let n = neutralBMI {
            scores = zip(bmi, n).map { $0 - $1 }
        } else {
            scores = bmi
        }
        let s = scores
        ranking = s.indices.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
        self.biasPromptCount = biasPromptCount
        self.neutralPromptCount = neutralPromptCount
    }
}

public enum LocateError: Error, CustomStringConvertible, Equatable {
    case noPrompts(String)
    case degenerateHiddenState(block: Int, prompt: Int)

    public var description: String {
        switch self {
        case .noPrompts(let what): return "cannot locate: no \(what) prompts (check the data file and --split)"
        case .degenerateHiddenState(let b, let p):
            return "hidden state around block \(b) is zero or not finite for prompt \(p): the checkpoint's weights are broken"
        }
    }
}

extension LlamaModel {
    /// Mean over `prompts` of 1 − cos(h_i, h_{i+1}) at the last token, for every block i.
    public func blockModificationIndex(prompts: [[Int]]) throws -> [Double] {
        let L = config.numLayers, C = config.hiddenSize
        var sums = [Double](repeating: 0, count: L)
        var failure: LocateError?
        try forEachLastToken(prompts: prompts, collectHidden: true) { p, _, hidden in
            guard let h = hidden, failure == nil else { return }
            for i in 0..<L {
                let a = h.baseAddress! + i * C, b = h.baseAddress! + (i + 1) * C
                var dot = 0.0, na = 0.0, nb = 0.0
                for c in 0..<C {
                    let x = Double(a[c]), y = Double(b[c])
                    dot += x * y; na += x * x; nb += y * y
                }
                let den = (na * nb).squareRoot()
                guard den > 0, den.isFinite, dot.isFinite else { failure = .degenerateHiddenState(block: i, prompt: p); return }
                sums[i] += 1 - dot / den
            }
        }
        if let f = failure { throw f }
        return sums.map { $0 / Double(prompts.count) }
    }

    /// Ranks the blocks with `locator` over tokenized bias prompts (and neutral prompts for `contrast`).
    public func locate(biasPrompts: [[Int]], neutralPrompts: [[Int]], locator: Locator) throws -> BlockRanking {
        guard !biasPrompts.isEmpty else { throw LocateError.noPrompts("bias") }
        let bmi = try blockModificationIndex(prompts: biasPrompts)
        var neutral: [Double]?
        if locator == .contrast {
            guard !neutralPrompts.isEmpty else { throw LocateError.noPrompts("neutral") }
            neutral = try blockModificationIndex(prompts: neutralPrompts)
        }
        return BlockRanking(locator: locator, bmi: bmi, neutralBMI: neutral,
                            biasPromptCount: biasPrompts.count,
                            neutralPromptCount: locator == .contrast ? neutralPrompts.count : 0)
    }
}

// MARK: - Pictures

extension BlockRanking {
    /// A terminal bar chart, one line per block in block order, the chosen block marked.
    public func barChart(width: Int = 40) -> String {
        let maxV = max(scores.map { abs($0) }.max() ?? 1, 1e-12)
        var out = ""
        let digits = String(scores.count - 1).count
        for (i, s) in scores.enumerated() {
            let n = Int((abs(s) / maxV * Double(width)).rounded())
            let bar = String(repeating: s >= 0 ? "█" : "░", count: n)
            let idx = String(repeating: " ", count: digits - String(i).count) + String(i)
            let mark = i == top ? "  ← rank 1" : ""
            out += "block \(idx) │\(bar)\(String(repeating: " ", count: width - n)) \(String(format: "%+.4f", s))\(mark)\n"
        }
        return out
    }

    /// The ranking as text: rank, block, score (and BMI on bias/neutral prompts for contrast).
    public func rankingTable() -> String {
        var out = locator == .contrast ? "rank  block   score     BMI(bias)  BMI(neutral)\n" : "rank  block   BMI\n"
        for (r, b) in ranking.enumerated() {
            if locator == .contrast, let n = neutralBMI {
                out += String(format: "%4d  %5d  %+.4f   %.4f     %.4f\n", r + 1, b, scores[b], bmi[b], n[b])
            } else {
                out += String(format: "%4d  %5d  %.4f\n", r + 1, b, scores[b])
            }
        }
        return out
    }

    /// An SVG bar chart of the scores by block (the chosen block in a different colour).
    public func svg(title: String) -> String {
        let n = scores.count
        let w = 60 + n * 18 + 20, h = 300
        let plotH = 200.0, base = 240.0
        let maxV = max(scores.max() ?? 1, 1e-12), minV = min(scores.min() ?? 0, 0)
        let range = maxV - minV
        let zeroY = base - (0 - minV) / range * plotH
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w / 2)\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">\(esc(title))</text>\n"
        let label = locator == .bmi ? "BMI = 1 − cos(h_i, h_i+1)" : "BMI(bias) − BMI(neutral)"
        s += "<text x=\"14\" y=\"\(Int(base - plotH / 2))\" transform=\"rotate(-90 14 \(Int(base - plotH / 2)))\" text-anchor=\"middle\">\(label)</text>\n"
        s += String(format: "<line x1=\"50\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#444\"/>\n", zeroY, w - 10, zeroY)
        for t in 0...4 {
            let v = minV + range * Double(t) / 4
            let y = base - (v - minV) / range * plotH
            s += String(format: "<text x=\"46\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", y + 4, v)
            s += String(format: "<line x1=\"50\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", y, w - 10, y)
        }
        for (i, v) in scores.enumerated() {
            let x = 56 + i * 18
            let y = base - (v - minV) / range * plotH
            let top = min(y, zeroY), height = abs(zeroY - y)
            let color = i == self.top ? "#d62728" : "#1f77b4"
            s += String(format: "<rect x=\"%d\" y=\"%.1f\" width=\"14\" height=\"%.1f\" ", x, top, max(height, 0.5))
                + "fill=\"\(color)\">" + String(format: "<title>block %d: %.4f</title></rect>\n", i, v)
            s += "<text x=\"\(x + 7)\" y=\"\(Int(base) + 14)\" text-anchor=\"middle\" font-size=\"9\">\(i)</text>\n"
        }
        s += "<text x=\"\(w / 2)\" y=\"\(Int(base) + 32)\" text-anchor=\"middle\">block</text>\n"
        s += "</svg>\n"
        return s
    }
}
