import Foundation

// The per-profession chart: mean P(he) and P(she) over each profession's bias prompts, every
// profession, sorted by the base model's bias (P(he) − P(she), most "he" first). With a patch,
// a second panel shows the patched model on the same rows and scale, and the last panel the
// bias before (grey) and after (colour). Plain SVG 1.1, written by hand: no dependency.

public struct ProfessionPoint: Sendable, Equatable {
    public var profession: String
    /// Bias prompts averaged.
    public var count: Int
    public var baseHe: Double, baseShe: Double
    public var patchedHe: Double?, patchedShe: Double?
    public var baseBias: Double { baseHe - baseShe }
}

public enum Chart {
    /// Per-profession means over bias prompts that name a profession, sorted by base bias (descending,
    /// ties by name). `patched` must cover the same prompts as `base`.
    public static func professionPoints(base: EvalRun, patched: EvalRun? = nil) -> [ProfessionPoint] {
        var acc: [String: (n: Int, bh: Double, bs: Double, ph: Double, ps: Double)] = [:]
        for (i, p) in base.prompts.enumerated() where p.kind == .bias {
            guard let name = p.profession else { continue }
            var a = acc[name, default: (0, 0, 0, 0, 0)]
            a.n += 1
            a.bh += base.probabilities[i].he; a.bs += base.probabilities[i].she
            if let q = patched?.probabilities[i] { a.ph += q.he; a.ps += q.she }
            acc[name] = a
        }
        let points = acc.map { name, a -> ProfessionPoint in
            let n = Double(a.n)
            return ProfessionPoint(profession: name, count: a.n, baseHe: a.bh / n, baseShe: a.bs / n,
                                   patchedHe: patched == nil ? nil : a.ph / n, patchedShe: patched == nil ? nil : a.ps / n)
        }
        return points.sorted { ($0.baseBias, $1.profession) > ($1.baseBias, $0.profession) }
    }

    static let heColor = "#1f63b4", sheColor = "#d1495b", greyColor = "#9a9a9a"

    /// The SVG document. `title` goes on top; `subtitles` are the base/patched panel headers.
    public static func svg(points: [ProfessionPoint], title: String, baseLabel: String = "base",
                           patchedLabel: String = "patched") -> String {
        let hasPatch = points.contains { $0.patchedHe != nil }
        let rowH = 14.0, top = 84.0, labelW = 170.0, panelW = 300.0, biasW = 240.0, gap = 50.0, bottom = 40.0
        let panels = hasPatch ? 2 : 1
        let width = labelW + Double(panels) * (panelW + gap) + biasW + 20
        let height = top + Double(max(points.count, 1)) * rowH + bottom
        // Probability axis: 0 … the largest value, rounded up to 0.1.
        var pMax = 0.1
        for p in points { pMax = max(pMax, p.baseHe, p.baseShe, p.patchedHe ?? 0, p.patchedShe ?? 0) }
        pMax = (pMax * 10).rounded(.up) / 10
        // Bias axis: symmetric, rounded up to 0.1.
        var bMax = 0.1
        for p in points { bMax = max(bMax, abs(p.baseBias), abs((p.patchedHe ?? 0) - (p.patchedShe ?? 0))) }
        bMax = (bMax * 10).rounded(.up) / 10

        var s = ""
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"10\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">\(xmlEscape(title))</text>\n"
        // Legend
        s += "<circle cx=\"16\" cy=\"38\" r=\"4\" fill=\"\(heColor)\"/><text x=\"24\" y=\"41\">P(he)</text>\n"
        s += "<circle cx=\"76\" cy=\"38\" r=\"4\" fill=\"\(sheColor)\"/><text x=\"84\" y=\"41\">P(she)</text>\n"
        s += "<text x=\"140\" y=\"41\" fill=\"#555\">mean over each profession's bias prompts; rows sorted by the base model's P(he) − P(she)</text>\n"

        func probPanel(x0: Double, header: String, value: (ProfessionPoint) -> (Double, Double)?) {
            s += "<text x=\"\(f(x0))\" y=\"\(f(top - 24))\" font-size=\"12\" font-weight=\"bold\">\(xmlEscape(header))</text>\n"
            var t = 0.0
            while t <= pMax + 1e-9 {
                let x = x0 + t / pMax * panelW
                s += "<line x1=\"\(f(x))\" y1=\"\(f(top - 4))\" x2=\"\(f(x))\" y2=\"\(f(height - bottom + 4))\" stroke=\"#e4e4e4\"/>\n"
                for ty in [top - 8, height - bottom + 16] {
                    s += "<text x=\"\(f(x))\" y=\"\(f(ty))\" text-anchor=\"middle\" fill=\"#555\">\(String(format: "%.1f", t))</text>\n"
                }
                t += 0.1
            }
            s += "<text x=\"\(f(x0 + panelW / 2))\" y=\"\(f(height - bottom + 30))\" text-anchor=\"middle\">probability of the next token</text>\n"
            for (r, p) in points.enumerated() {
                guard let (he, she) = value(p) else { continue }
                let y = top + (Double(r) + 0.5) * rowH
                let xh = x0 + he / pMax * panelW, xs = x0 + she / pMax * panelW
                s += "<line x1=\"\(f(min(xh, xs)))\" y1=\"\(f(y))\" x2=\"\(f(max(xh, xs)))\" y2=\"\(f(y))\" stroke=\"#bbbbbb\" stroke-width=\"2\"/>"
                s += "<circle cx=\"\(f(xh))\" cy=\"\(f(y))\" r=\"3.5\" fill=\"\(heColor)\"/>"
                s += "<circle cx=\"\(f(xs))\" cy=\"\(f(y))\" r=\"3.5\" fill=\"\(sheColor)\"/>\n"
            }
        }
        // Row labels and zebra stripes
        for (r, p) in points.enumerated() {
            let y = top + Double(r) * rowH
            if r % 2 == 1 { s += "<rect x=\"0\" y=\"\(f(y))\" width=\"\(Int(width))\" height=\"\(f(rowH))\" fill=\"#f6f6f6\"/>\n" }
            s += "<text x=\"\(f(labelW - 8))\" y=\"\(f(y + rowH - 4))\" text-anchor=\"end\">\(xmlEscape(p.profession))</text>\n"
        }
        var x0 = labelW
        probPanel(x0: x0, header: baseLabel) { ($0.baseHe, $0.baseShe) }
        x0 += panelW + gap
        if hasPatch {
            probPanel(x0: x0, header: patchedLabel) { p in p.patchedHe.map { ($0, p.patchedShe ?? 0) } }
            x0 += panelW + gap
        }
        // Bias panel: P(he) − P(she), bars from zero.
        let mid = x0 + biasW / 2
        s += "<text x=\"\(f(x0))\" y=\"\(f(top - 24))\" font-size=\"12\" font-weight=\"bold\">P(he) − P(she)\(hasPatch ? " (grey: \(xmlEscape(baseLabel)))" : "")</text>\n"
        for t in [-bMax, -bMax / 2, 0, bMax / 2, bMax] {
            let x = mid + t / bMax * biasW / 2
            s += "<line x1=\"\(f(x))\" y1=\"\(f(top - 4))\" x2=\"\(f(x))\" y2=\"\(f(height - bottom + 4))\" stroke=\"\(t == 0 ? "#888" : "#e4e4e4")\"/>\n"
            for ty in [top - 8, height - bottom + 16] {
                s += "<text x=\"\(f(x))\" y=\"\(f(ty))\" text-anchor=\"middle\" fill=\"#555\">\(String(format: "%+.2f", t))</text>\n"
            }
        }
        s += "<text x=\"\(f(mid))\" y=\"\(f(height - bottom + 30))\" text-anchor=\"middle\">← she · he →</text>\n"
        for (r, p) in points.enumerated() {
            let y = top + Double(r) * rowH
            func bar(_ v: Double, _ color: String, _ y: Double, _ h: Double) {
                let x = mid + min(0, v) / bMax * biasW / 2, w = abs(v) / bMax * biasW / 2
                s += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(h))\" fill=\"\(color)\"/>"
            }
            if let ph = p.patchedHe, let ps = p.patchedShe {
                bar(p.baseBias, greyColor, y + 2, 5)
                bar(ph - ps, ph - ps >= 0 ? heColor : sheColor, y + 7, 5)
            } else {
                bar(p.baseBias, p.baseBias >= 0 ? heColor : sheColor, y + 3, rowH - 6)
            }
            s += "\n"
        }
        s += "</svg>\n"
        return s
    }

    static func xmlEscape(_ s: String) -> String {
        var o = ""
        for c in s {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            default: o.append(c)
            }
        }
        return o
    }
}
