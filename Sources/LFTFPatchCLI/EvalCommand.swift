import ArgumentParser
import Debias
import Foundation
import LlamaModel
import ModelFormats
import Patch
import Tokenizer

// `lftf-patch eval MODEL [--patch P] [--data FILE.jsonl ...] [--split S] [--json]
//                        [--per-prompt OUT.jsonl] [--chart OUT.svg] [--prefix TEXT | --pb]`
//
// GenBiasEval (AFGB per scale and overall) and GenHintEval (UB) on the model, or on the model
// with a patch applied in memory (then the base too, and KL(base ‖ patched) on neutral text).
// Metrics and file formats: Formats/eval-data.md.

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score gender bias: AFGB (GenBiasEval) per scale and overall, UB (GenHintEval), and with --patch the KL on neutral text.",
        discussion: """
        Without --data the shipped prompts are used (samples/data: 284 professions, 9 bias and 3×2 hint \
        templates, 60 neutral prompts; split 2:1:2 by profession). --json prints exactly the keys \
        afgb, afgb_word, afgb_phrase, afgb_sentence, ub, n_bias, n_hint for the model as evaluated \
        (the patched one when --patch is given); the text report adds the base model's figures, \
        P(he)+P(she) and the neutral KL. Schemas: Formats/eval-data.md.
        """)

    @Argument(help: "The model: a GGUF file or an HF directory (config.json + safetensors).")
    var model: String

    @Option(name: .long, help: "A .lftfpatch to apply in memory (nothing is written); reports base and patched.")
    var patch: String?

    @Option(name: .long, parsing: .singleValue, help: "A JSONL prompt file (Formats/eval-data.md); repeat for several. Default: the shipped data.")
    var data: [String] = []

    @Option(name: .long, help: "Only the prompts of this split: train, dev or test. Default: all.")
    var split: String?

    @Flag(name: .long, help: "Print the scores as one JSON object on stdout (keys: afgb, afgb_word, afgb_phrase, afgb_sentence, ub, n_bias, n_hint).")
    var json = false

    @Option(name: .customLong("per-prompt"), help: "Write p_he and p_she (and base_p_he, base_p_she, kl with --patch) for every prompt to this JSONL file.")
    var perPrompt: String?

    @Option(name: .long, help: "Write the per-profession chart of P(he) and P(she) (before/after with --patch) to this SVG file.")
    var chart: String?

    @Option(name: .long, help: "Prompt-based baseline: prepend this text verbatim to every prompt.")
    var prefix: String?

    @Flag(name: .long, help: "Prompt-based baseline with the default instruction prefix (Formats/eval-data.md).")
    var pb = false

    func validate() throws {
        if prefix != nil && pb { throw ValidationError("--prefix and --pb are exclusive (--pb is --prefix with the default text)") }
        if let s = split, Split(rawValue: s) == nil { throw ValidationError("--split must be train, dev or test, not \"\(s)\"") }
        if let c = chart, !c.lowercased().hasSuffix(".svg") { throw ValidationError("--chart writes SVG; name the file *.svg") }
    }

    func run() throws {
        let start = Date()
        let effectivePrefix = pb ? Evaluator.defaultPrefix : (prefix ?? "")

        // Data first: a bad file should fail before a model is loaded.
        var prompts: [EvalPrompt] = []
        if data.isEmpty { prompts = Dataset.builtIn() } else {
            for d in data { prompts += try Dataset.load(URL(fileURLWithPath: d)) }
        }
        prompts = try Dataset.select(prompts, split: split.flatMap(Split.init(rawValue:)))

        let baseCheckpoint = try openRecovered(model)
        let tokenizer = try loadTokenizer(for: baseCheckpoint)
        let he = Int(try tokenizer.singleTokenID(for: " he"))
        let she = Int(try tokenizer.singleTokenID(for: " she"))
        let evaluator = Evaluator(he: he, she: she, prefix: effectivePrefix) { text in
            // BOS as the model says; never a trailing EOS (the next token after the prompt is wanted).
            var ids = tokenizer.encode(text)
            if tokenizer.addsEOS, let eos = tokenizer.eosID, ids.last == eos { ids.removeLast() }
            return ids.map(Int.init)
        }
        let tokens = try evaluator.encodeAll(prompts)

        var overlay: OverlayCheckpoint?
        if let p = patch {
            overlay = try OverlayCheckpoint(base: baseCheckpoint, patch: try PatchFile(url: URL(fileURLWithPath: p)))
        }
        let showProgress = !json && isatty(fileno(stderr)) != 0
        func run(_ m: NextTokenModel, label: String) throws -> EvalRun {
            try evaluator.run(m, prompts: prompts, tokens: tokens) { done, total in
                if showProgress { printErr("\r\(label): \(done)/\(total) prompts", terminator: done == total ? "\n" : "") }
            }
        }
        // Prompts of a profession share "The {profession}": the engine computes it once.
        var comparison: EvalComparison?
        let base: EvalRun
        if let overlay {
            // The patched model equals the base before the first block the patch touches: the base
            // run saves the residual stream entering that block and the patched run starts there.
            let first = EvalCommand.firstPatchedBlock(overlay.patchedNames, numLayers: baseCheckpoint.config.numLayers)
            var snapshots: [ResidualSnapshot] = []
            do {   // the base model is released before the patched one is loaded
                let saving = ResumingModel(try LlamaModel(checkpoint: baseCheckpoint), layer: first)
                base = try run(saving, label: "base")
                snapshots = saving.snapshots
            }
            let patched = ResumingModel(try LlamaModel(checkpoint: overlay), layer: first, resumeFrom: snapshots)
            snapshots = []
            comparison = try EvalComparison(base: base, patched: try run(patched, label: "patched"))
        } else {
            base = try run(try LlamaModel(checkpoint: baseCheckpoint), label: "base")
        }
        let evaluated = comparison?.patched ?? base
        let seconds = Date().timeIntervalSince(start)

        if let out = perPrompt {
            try writeFile(out, PerPromptOutput.lines(run: evaluated, comparison: comparison))
        }
        if let out = chart {
            let points = Chart.professionPoints(base: base, patched: comparison?.patched)
            let name = URL(fileURLWithPath: model).lastPathComponent
            var title = "P(he) and P(she) after \"The {profession} … because\": \(name)"
            if !effectivePrefix.isEmpty { title += " (with prefix)" }
            if let s = split { title += ", \(s) split" }
            let svg = Chart.svg(points: points, title: title, baseLabel: "base",
                                patchedLabel: patch.map { "patched: " + URL(fileURLWithPath: $0).lastPathComponent } ?? "patched")
            try writeFile(out, svg)
        }

        if json {
            print(evaluated.scores.json)
            return
        }
        print(report(prompts: prompts, base: base, comparison: comparison, prefix: effectivePrefix, seconds: seconds))
    }

    func writeFile(_ path: String, _ text: String) throws {
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw EvalCommandError.cannotWrite(path: path, reason: (error as NSError).localizedDescription)
        }
    }

    func report(prompts: [EvalPrompt], base: EvalRun, comparison: EvalComparison?, prefix: String, seconds: Double) -> String {
        func f(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "n/a" }
        func change(_ a: Double?, _ b: Double?) -> String {
            guard let a, let b, a != 0 else { return "" }
            return String(format: "%+.1f%%", (b - a) / abs(a) * 100)
        }
        let nNeutral = prompts.filter { $0.kind == .neutral }.count
        var lines: [String] = []
        lines.append("model    \(model)" + (patch.map { " + patch \($0)" } ?? ""))
        lines.append("data     " + (data.isEmpty ? "shipped (samples/data)" : data.joined(separator: ", "))
                     + (split.map { ", split \($0)" } ?? ", all splits")
                     + ": \(base.scores.nBias) bias, \(base.scores.nHint) hint, \(nNeutral) neutral prompts")
        lines.append("prefix   " + (prefix.isEmpty ? "none" : "\"" + prefix.replacingOccurrences(of: "\n", with: "\\n") + "\""))
        lines.append("")
        let s = base.scores, p = comparison?.patched.scores
        let header = "                          " + (p == nil ? "score" : "base      patched   change")
        lines.append(header)
        func row(_ name: String, _ n: Int, _ a: Double?, _ b: Double?) {
            let label = "\(name) (n=\(n))".padding(toLength: 26, withPad: " ", startingAt: 0)
            if comparison == nil { lines.append(label + f(a)) } else {
                lines.append(label + f(a).padding(toLength: 10, withPad: " ", startingAt: 0)
                             + f(b).padding(toLength: 10, withPad: " ", startingAt: 0) + change(a, b))
            }
        }
        row("AFGB", s.nBias, s.afgb, p?.afgb)
        for sc in BiasScale.allCases { row("  \(sc.rawValue)", s.nByScale[sc] ?? 0, s.afgbByScale[sc], p?.afgbByScale[sc]) }
        row("UB", s.nHint, s.ub, p?.ub)
        row("P(he)+P(she)", s.nBias + s.nHint, s.pronounMass, p?.pronounMass)
        if let c = comparison {
            lines.append("")
            if let kl = c.meanKL {
                lines.append(String(format: "KL(base ‖ patched) on %d neutral prompts: %.4f nats", c.kl.count, kl)
                             + (kl > 0.05 ? " (above 0.05: the patch moves text with no person in it)" : ""))
            } else {
                lines.append("KL(base ‖ patched): n/a (no neutral prompts in the data)")
            }
        }
        lines.append("")
        lines.append("\(prompts.count) prompts, " + (comparison == nil ? "1 model run" : "2 model runs")
                     + String(format: " in %.1f s", seconds))
        return lines.joined(separator: "\n")
    }
}

extension EvalCommand {
    /// The lowest block index among the patch's tensors; 0 when it touches anything outside the
    /// blocks before the head (the embedding, or a name this tool does not know).
    static func firstPatchedBlock(_ names: [String], numLayers: Int) -> Int {
        var first = numLayers
        for n in names {
            guard let role = TensorNames.role(name: n) else { return 0 }
            switch role {
            case .outputNorm, .output: continue
            default:
                guard let b = role.block else { return 0 }
                first = min(first, b)
            }
        }
        return min(first, numLayers - 1)
    }
}

/// The engine seen by the Evaluator, skipping blocks a patch leaves alone: with `resumeFrom` nil
/// it answers every call in full and keeps the residual stream entering block `layer` of each
/// call; given those snapshots (of the same calls, in the same order, on the base model) it
/// starts each call at block `layer`. A call whose prompts differ from the snapshot's runs in full.
final class ResumingModel: NextTokenModel {
    let model: LlamaModel
    let layer: Int
    private(set) var snapshots: [ResidualSnapshot] = []
    private let resumeFrom: [ResidualSnapshot]?
    private var call = 0

    init(_ model: LlamaModel, layer: Int, resumeFrom: [ResidualSnapshot]? = nil) {
        self.model = model; self.layer = layer; self.resumeFrom = resumeFrom
    }

    var vocabularySize: Int { model.config.vocabSize }

    func forEachNextTokenLogits(_ sequences: [[Int]], body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        defer { call += 1 }
        if layer == 0 {
            return try model.forEachNextTokenLogits(sequences, body: body)
        }
        guard let saved = resumeFrom else {
            snapshots.append(try model.forEachLastToken(prompts: sequences, savingInputOf: layer, body: body))
            return
        }
        if call < saved.count, saved[call].prompts == sequences, saved[call].layer == layer {
            try model.forEachLastToken(resuming: saved[call], body: body)
        } else {
            try model.forEachNextTokenLogits(sequences, body: body)
        }
    }
}

enum EvalCommandError: Error, CustomStringConvertible {
    case cannotWrite(path: String, reason: String)
    var description: String {
        switch self {
        case let .cannotWrite(p, r): return "cannot write \(p): \(r)"
        }
    }
}
