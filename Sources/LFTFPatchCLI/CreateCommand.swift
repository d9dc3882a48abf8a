import ArgumentParser
import Crypto
import Debias
import Foundation
import LlamaModel
import ModelFormats
import Patch
import Tokenizer

// `lftf-patch create MODEL -o OUT.lftfpatch`: locate, fine-tune one block in memory, write the
// patch. Stages (progress on stderr): open → locate → cache → train → encode → score as stored →
// write. The scores stored in the patch are measured on the base checkpoint with the patch's
// tensors decoded from the patch file itself (OverlayCheckpoint), i.e. rounded to their stored
// dtype: what is shipped is what was measured.

/// Options shared by `create` and `locate`: the model, the prompts, the locator.
struct ModelDataOptions: ParsableArguments {
    @Argument(help: "The base model: a GGUF file or an HF directory (config.json + safetensors).")
    var model: String

    @Option(name: .customLong("data"), help: "Prompt file(s) in the eval-data JSONL schema (default: the built-in GenBiasEval, GenHintEval and neutral sets). Training uses their \"train\" lines.")
    var data: [String] = []

    @Option(help: "How to rank blocks: bmi (the paper's 1 − cos on bias prompts) or contrast (BMI on bias prompts minus BMI on neutral prompts).")
    var locator: Locator = .contrast

    func loadPrompts() throws -> (prompts: [EvalPrompt], sources: [DataSource]) {
        if data.isEmpty {
            let all = Dataset.builtIn()
            let sources = BuiltInData.files.map {
                DataSource(name: "built-in:samples/data/" + $0.name, sha256: sha256Hex(Array($0.text.utf8)),
                           count: $0.text.split(separator: "\n").count)
            }
            return (all, sources)
        }
        var all: [EvalPrompt] = [], sources: [DataSource] = []
        for path in data {
            let url = URL(fileURLWithPath: path)
            let p = try Dataset.load(url)
            let bytes = try Data(contentsOf: url)
            all += p
            sources.append(DataSource(name: url.lastPathComponent, sha256: sha256Hex(Array(bytes)), count: p.count))
        }
        return (all, sources)
    }
}

extension Locator: ExpressibleByArgument {}
extension ObjectiveKind: ExpressibleByArgument {}
extension Split: ExpressibleByArgument {}

/// The patch manifest's JSON value (ModelFormats has another JSONValue, for safetensors headers).
typealias PJSON = Patch.JSONValue

enum CreateError: Error, CustomStringConvertible {
    case outputExists(String)
    case changeVanished(dtype: DType, detail: String)
    case unsupportedStoredDType(String)
    case notAnHFOrGGUF(String)
    case trainingWontFit(blocks: Int, needBytes: UInt64, haveBytes: UInt64)

    var description: String {
        switch self {
        case .outputExists(let p): return "\(p) exists: pass --force to overwrite it"
        case .changeVanished(let d, let detail):
            return "the fine-tune's change vanishes when its tensors are rounded to \(d.rawValue) (\(detail)): store them at a higher precision (--stored-dtype f32) or train with a larger --lr"
        case .unsupportedStoredDType(let s): return "--stored-dtype \(s) is not supported: use native, f32, f16, bf16, q8_0, q4_1 or q4_0"
        case .notAnHFOrGGUF(let p): return "\(p) is neither a GGUF file nor an HF model directory"
        case .trainingWontFit(let b, let need, let have):
            return "training \(b) block\(b == 1 ? "" : "s") needs ≈ \(humanBytes(Int(need))) for fp32 weights, gradients and Adam state alone, more than this machine's \(humanBytes(Int(have))) of memory: train one block (drop --all-blocks) or use a machine with more memory"
        }
    }
}

/// Opens a model path as a checkpoint.
func openModelCheckpoint(_ path: String) throws -> any Checkpoint {
    let url = URL(fileURLWithPath: path)
    return try openCheckpoint(url)
}

/// Hex SHA-256 of some bytes (data files' identity in the provenance).
func sha256Hex(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

/// stderr progress with elapsed time.
final class StageLog {
    let start = Date()
    let quiet: Bool
    init(quiet: Bool) { self.quiet = quiet }
    var elapsed: Double { Date().timeIntervalSince(start) }
    func stage(_ s: String) { if !quiet { printErr(String(format: "[%6.1fs] ", elapsed) + s) } }
    func line(_ s: String) { if !quiet { printErr(s) } }
}

/// Peak resident set size of this process (VmHWM), in bytes, or nil where /proc is absent.
func peakRSSBytes() -> Int? {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        // "VmHWM:\t 123456 kB", or with no space after the tab from 8 digits on
        let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if f.count >= 2, let kb = Int(f[1]) { return kb * 1024 }
    }
    return nil
}

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Locate the block most tied to gender bias, fine-tune it, and write the change as a .lftfpatch.",
        discussion: """
        Defaults come from measurements on SmolLM2-135M (README "Design"): the balance objective \
        ((log P(he) − log P(she))² on bias prompts, hint log-ratio preservation, KL to the base \
        on neutral text), the contrast locator. --loss paper --lr 1e-5 reproduces the paper's \
        setting. The stored scores (AFGB, UB, neutral KL on --eval-split) are measured on the \
        patch as stored. Progress goes to stderr; --json prints a summary on stdout.
        """)

    @OptionGroup var common: ModelDataOptions

    @Option(name: .shortAndLong, help: "Where to write the patch.")
    var output: String

    @Flag(help: "Overwrite the output if it exists.")
    var force = false

    @Option(help: "Objective: balance (default) or paper (P(he) + P(she)).")
    var loss: ObjectiveKind = .balance

    @Option(help: "Train this block instead of the located one (the ranking is still computed and stored).")
    var block: Int?

    @Flag(help: "FPFT baseline: train every block's attention and MLP weights.")
    var allBlocks = false

    @Option(help: "Adam learning rate (default: 1e-5 for --loss paper, \(CreateDefaults.balanceLR) for balance).")
    var lr: Double?

    @Option(help: "Epochs over the training bias prompts.")
    var epochs: Int = 2

    @Option(help: "Bias prompts per step.")
    var batch: Int = 32

    @Option(help: "Seed of the example order.")
    var seed: UInt64 = 0

    @Option(help: "Balance objective: weight of the hint log-ratio term.")
    var hintWeight: Double = CreateDefaults.hintWeight

    @Option(help: "Balance objective: weight of the KL-to-base term on neutral prompts.")
    var klWeight: Double = CreateDefaults.klWeight

    @Option(help: "Balance objective: weight of the term that keeps log(P(he) + P(she)) at the base's.")
    var sumWeight: Double = CreateDefaults.sumWeight

    @Option(help: "Balance objective: hint prompts added to each step.")
    var hintPerBatch: Int = CreateDefaults.hintPerBatch

    @Option(help: "Balance objective: neutral prompts added to each step.")
    var neutralPerBatch: Int = CreateDefaults.neutralPerBatch

    @Option(help: "Train on at most this many bias prompts (evenly spaced over the training split).")
    var maxBiasPrompts: Int?

    @Option(help: "Locate on at most this many training bias prompts, evenly spaced over professions and templates (0: all).")
    var locatePrompts: Int = CreateDefaults.locatePrompts

    @Option(help: "Small-data mode for a big model on a small machine: use at most N prompts of each kind (bias, hint, neutral) in each split — for locating, training and the stored scores — drawn with --seed, stratified by template and by scale or hint gender. The patch records the subset. Default: every prompt.")
    var maxPrompts: Int?

    @Option(help: "Split the stored scores are measured on.")
    var evalSplit: Split = .test

    @Option(help: "Stored dtype of the patched tensors: native (the base's for float checkpoints, f16 for quantized GGUF), f32, f16, bf16, q8_0, q4_1 or q4_0.")
    var storedDtype: String = "native"

    @Flag(help: "Also score the fp32 weights in memory, to show what rounding to the stored dtype costs.")
    var compareFP32 = false

    @Option(help: "Write the block ranking as an SVG bar chart here.")
    var chart: String?

    @Flag(help: "Print a JSON summary on stdout.")
    var json = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let lr { guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be positive") } }
        guard !(allBlocks && block != nil) else { throw ValidationError("--all-blocks and --block exclude each other") }
        guard hintPerBatch >= 0, neutralPerBatch >= 0 else { throw ValidationError("per-batch counts must not be negative") }
        if let m = maxPrompts { guard m >= 1 else { throw ValidationError("--max-prompts must be at least 1") } }
    }

    func run() throws {
        let log = StageLog(quiet: quiet)
        let outURL = URL(fileURLWithPath: output)
        if FileManager.default.fileExists(atPath: outURL.path) && !force { throw CreateError.outputExists(output) }

        // Seconds per stage of this command (the training stages come from DebiasTraining).
        var stageTimes: [(String, Double)] = []
        var stageClock = Date()
        func lap(_ name: String) { stageTimes.append((name, Date().timeIntervalSince(stageClock))); stageClock = Date() }

        log.stage("open \(common.model)")
        let ckpt = try openModelCheckpoint(common.model)
        // Blocks past the weight cache are dequantized from the mapped file on every pass:
        // unmap their pages after each read, so that resident memory is what create holds, not
        // the whole file (the pages stay in the page cache).
        (ckpt as? HFCheckpoint)?.releasePagesAfterRead = true
        (ckpt as? GGUFCheckpoint)?.releasePagesAfterRead = true
        let tokenizer = try loadTokenizer(for: ckpt)
        let he = Int(try tokenizer.singleTokenID(for: " he")), she = Int(try tokenizer.singleTokenID(for: " she"))
        let encode: (String) throws -> [Int] = { tokenizer.encode($0).map(Int.init) }
        // The trained blocks are the only ones held with fp32 copies, gradients and Adam's two
        // moments (4 floats per weight): refuse up front what cannot fit (FPFT of a 7B model).
        let cfg = ckpt.config
        let blockElements = (2 * cfg.numHeads + 2 * cfg.numKVHeads) * cfg.headDim * cfg.hiddenSize + 3 * cfg.intermediateSize * cfg.hiddenSize
        let trainedBlocks = allBlocks ? cfg.numLayers : 1
        let trainBytes = UInt64(trainedBlocks) * UInt64(blockElements) * 16
        if trainBytes > ProcessInfo.processInfo.physicalMemory {
            throw CreateError.trainingWontFit(blocks: trainedBlocks, needBytes: trainBytes, haveBytes: ProcessInfo.processInfo.physicalMemory)
        }
        let model = try LlamaModel(checkpoint: ckpt)
        var (prompts, sources) = try common.loadPrompts()
        var subset: (prompts: [EvalPrompt], groups: [PromptSubset.Group])?
        if let n = maxPrompts {
            subset = PromptSubset.select(prompts, maxPerGroup: n, seed: seed)
            prompts = subset!.prompts
            log.line("small-data mode (--max-prompts \(n), seed \(seed)): " + subset!.groups.map {
                "\($0.split) \($0.kind.rawValue) \($0.kept) of \($0.available)"
            }.joined(separator: ", "))
        }
        let train = try Dataset.select(prompts, split: .train)
        let evalPrompts = try Dataset.select(prompts, split: evalSplit)
        lap("open")

        var o = DebiasTrainingOptions()
        o.loss = loss
        o.weights = ObjectiveWeights(hint: hintWeight, neutralKL: klWeight, sum: sumWeight)
        o.locator = common.locator
        o.block = block
        o.allBlocks = allBlocks
        o.learningRate = lr ?? (loss == .paper ? 1e-5 : CreateDefaults.balanceLR)
        o.epochs = epochs; o.batchSize = batch; o.seed = seed
        o.hintPerBatch = hintPerBatch; o.neutralPerBatch = neutralPerBatch
        o.maxBiasPrompts = maxBiasPrompts ?? (loss == .paper ? nil : CreateDefaults.maxBiasPrompts)
        o.locatePrompts = locatePrompts > 0 ? locatePrompts : nil

        // Base scores first (the model is untouched).
        let evaluator = Evaluator(he: he, she: she, encode: encode)
        let evalTokens = try evaluator.encodeAll(evalPrompts)
        log.stage("score the base on \(evalSplit.rawValue) (\(evalPrompts.count) prompts)")
        let baseRun = try evaluator.run(model, prompts: evalPrompts, tokens: evalTokens)
        lap("score base")
        // What is left after training, for the whole-run ETA: scoring the patch costs what
        // scoring the base did (same prompts, same model); encoding, compressing and writing the
        // patch twice (unscored, then with its scores) scales with the trained elements.
        let scoreSeconds = stageTimes.last!.1
        let afterTraining = scoreSeconds + Double(trainedBlocks * blockElements) * CreateDefaults.encodeWriteSecondsPerElement
        // Before training, stages are estimated from the base scoring's rate (seconds per token
        // through one block); a training step's ETA then comes from the steps themselves.
        // Once locating has run, its own rate (more recent: the load on a shared machine moves).
        var secondsPerTokenBlock = scoreSeconds / Double(max(evalTokens.reduce(0) { $0 + $1.count } * cfg.numLayers, 1))
        var rateSource = "the base scoring's rate"
        var pending: (work: Double, start: Date)?

        var lastPrint = Date.distantPast
        let result = try DebiasTraining.run(model: model, prompts: train, encode: encode, he: he, she: she, options: o) { ev in
            switch ev {
            case .stage(let s): log.stage(s)
            case .workAhead(let w):
                if let p = pending, p.work > 0 {
                    secondsPerTokenBlock = Date().timeIntervalSince(p.start) / p.work
                    rateSource = "the rate of locating"
                }
                pending = w.count == 1 && w[0].stage == "locate" ? (w[0].tokenBlocks, Date()) : nil
                let secs = w.map { $0.tokenBlocks * secondsPerTokenBlock }
                let parts = zip(w, secs).filter { $0.1 >= 0.5 }.map { "\($0.0.stage) ≈ " + String(format: "%.0fs", $0.1) }
                // after the batches are known, the whole rest of the run
                let whole = w.contains { $0.stage == "train" } ? String(format: "; whole run ≈ %.0fs more", secs.reduce(0, +) + afterTraining) : ""
                if !parts.isEmpty || !whole.isEmpty {
                    log.line("  estimate (at \(rateSource)): " + parts.joined(separator: ", ") + whole)
                }
            case .step(let p):
                if Date().timeIntervalSince(lastPrint) > 2 || p.step == p.totalSteps {
                    lastPrint = Date()
                    log.line(String(format: "  epoch %d/%d  step %d/%d  loss %.5f  elapsed %.1fs  ETA %.1fs (whole run ≈ %.0fs more)",
                                    p.epoch + 1, o.epochs, p.step, p.totalSteps, p.loss, p.elapsed, p.eta, p.eta + afterTraining))
                }
            }
            return true
        }
        stageTimes += result.timings
        stageClock = Date()
        let ranking = result.ranking!
        if !quiet { printErr(ranking.barChart()) }
        if let chart {
            try Data(ranking.svg(title: "Block ranking (\(ranking.locator.rawValue)), \(URL(fileURLWithPath: common.model).lastPathComponent)").utf8)
                .write(to: URL(fileURLWithPath: chart))
        }

        var fp32Run: EvalRun?
        if compareFP32 {
            log.stage("score the fp32 weights in memory")
            fp32Run = try evaluator.run(model, prompts: evalPrompts, tokens: evalTokens)
            lap("score fp32")
        }

        // Encode the trained tensors in their stored dtype.
        log.stage("encode tensors")
        let builder = PatchBuilder(base: ckpt)
        var stored: [String: DType] = [:]
        var changeReport: [String: PJSON] = [:]
        var blockDot = 0.0, blockWant = 0.0
        for w in result.trained {
            for role in TensorRole.trainable(block: w.layer) {
                let name = ckpt.name(for: role)
                guard let info = ckpt.tensorInfo(named: name) else { throw LlamaModelError.missingTensor(name) }
                let values = w.weight(for: role)!
                let dtype = try storedDType(for: info.dtype)
                let bytes = try encodeTensor(values, as: dtype)
                // How much of the change survives rounding: the stored change projected on the
                // trained one, kept = ⟨s − b, w − b⟩ / ‖w − b‖² (1: all of it; 0: none). Counting
                // changed elements is not enough: re-quantizing moves many elements at random.
                let baseValues = try ckpt.floats(info)
                let roundTrip = try bytes.withUnsafeBytes { try dequantize($0, dtype: dtype, count: values.count) }
                var changed = 0, dot = 0.0, want = 0.0, sumSq = 0.0, baseSq = 0.0
                for i in 0..<values.count {
                    if roundTrip[i] != baseValues[i] { changed += 1 }
                    let d = Double(roundTrip[i]) - Double(baseValues[i]), t = Double(values[i]) - Double(baseValues[i])
                    dot += d * t; want += t * t
                    sumSq += d * d; baseSq += Double(baseValues[i]) * Double(baseValues[i])
                }
                let kept = want > 0 ? dot / want : 1
                blockDot += dot; blockWant += want
                if want > 0 && kept < 0.9 {
                    log.line("warning: \(name): " + (kept < 0.005 ? "none" : "only " + String(format: "%.0f%%", kept * 100)) + " of the trained change survives rounding to \(dtype.rawValue)")
                }
                changeReport[name] = .object(["changed_fraction": .number(Double(changed) / Double(values.count)),
                                              "relative_size": .number(baseSq > 0 ? (sumSq / baseSq).squareRoot() : 0),
                                              "change_kept": .number(kept)])
                stored[name] = dtype
                try builder.replace(name, dtype: dtype, shape: info.shape, bytes: bytes)
            }
        }
        let keptAll = blockWant > 0 ? blockDot / blockWant : 1
        if blockWant > 0 && keptAll < 0.5 {
            throw CreateError.changeVanished(dtype: Set(stored.values).count == 1 ? stored.values.first! : .f32,
                detail: (keptAll < 0.005 ? "none" : "only " + String(format: "%.0f%%", keptAll * 100)) + " of the trained change survives, measured as the projection of the stored change on the trained one")
        }

        lap("encode")

        // Provenance: every setting needed to reproduce the run (no clock, no paths).
        var hp: [String: PJSON] = [:]
        hp["lr"] = .number(o.learningRate)
        hp["epochs"] = .number(Double(o.epochs))
        hp["batch"] = .number(Double(o.batchSize))
        hp["optimizer"] = .string("adam")
        hp["beta1"] = .number(0.9); hp["beta2"] = .number(0.999); hp["adam_eps"] = .number(1e-8)
        hp["locator"] = .string(o.locator.rawValue)
        hp["blocks"] = .array(result.trained.map { PJSON.number(Double($0.layer)) })
        hp["train_split"] = .string("train")
        hp["eval_split"] = .string(evalSplit.rawValue)
        hp["stored_dtype"] = .string(storedDtype)
        if loss == .balance {
            hp["hint_weight"] = .number(o.weights.hint); hp["kl_weight"] = .number(o.weights.neutralKL)
            hp["sum_weight"] = .number(o.weights.sum)
            hp["hint_per_batch"] = .number(Double(o.hintPerBatch)); hp["neutral_per_batch"] = .number(Double(o.neutralPerBatch))
        }
        if let m = o.maxBiasPrompts { hp["max_bias_prompts"] = .number(Double(m)) }
        hp["locate_prompts"] = .number(Double(o.locatePrompts ?? 0))
        for (k, v) in result.counts { hp["n_" + k] = .number(Double(v)) }
        var prov = Provenance(method: allBlocks ? "FPFT" : "LFTF", locatedBlock: ranking.top,
                              bmiRanking: ranking.ranking.map { RankedBlock(block: $0, bmi: ranking.scores[$0]) },
                              loss: loss == .paper ? "paper: P(he) + P(she)" : "balance: (log P(he) − log P(she))² + hint log-ratio + neutral KL + log-sum",
                              finalLoss: result.stepLosses.last, hyperparameters: hp, seed: seed,
                              toolVersion: PatchFormat.writer, data: sources)
        prov.extra["bmi_bias"] = .array(ranking.bmi.map { .number($0) })
        if let n = ranking.neutralBMI { prov.extra["bmi_neutral"] = .array(n.map { .number($0) }) }
        prov.extra["trained_blocks"] = .array(result.trained.map { .number(Double($0.layer)) })
        prov.extra["stored_change"] = .object(changeReport)
        if let subset, let n = maxPrompts {
            hp["max_prompts"] = .number(Double(n))
            prov.extra["subset"] = subsetJSON(subset, maxPerGroup: n)
        }
        prov.hyperparameters = hp
        builder.provenance = prov

        // Score as stored: write the patch without scores, decode it over the base, evaluate.
        log.stage("write the patch without scores, to score it as stored")
        let tmp = outURL.deletingLastPathComponent().appendingPathComponent(".\(outURL.lastPathComponent).unscored-\(getpid())")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try builder.write(to: tmp)
        lap("write unscored")
        let writeSeconds = stageTimes.last!.1
        log.stage("decode the patch over the base")
        let overlay = try OverlayCheckpoint(base: ckpt, patch: PatchFile(url: tmp))
        // The trained copies are the model's overrides: overwrite them with the stored values
        // (no second fp32 copy of the block; the fp32 weights are not needed any more).
        for w in result.trained {
            for role in TensorRole.trainable(block: w.layer) {
                let info = overlay.tensorInfo(named: overlay.name(for: role))!
                try w.setWeight(try overlay.floats(info), for: role)
            }
            try model.overrideBlock(w.layer, with: w)
        }
        lap("decode")
        log.stage(String(format: "score the patch as stored on \(evalSplit.rawValue) (ETA %.0fs: as long as the base's scoring, then writing)",
                         scoreSeconds + writeSeconds))
        let patchedRun = try evaluator.run(model, prompts: evalPrompts, tokens: evalTokens)
        lap("score patched")
        let cmp = try EvalComparison(base: baseRun, patched: patchedRun)

        func dict(_ s: BiasScores, kl: Double?) -> [String: Double] {
            var d: [String: Double] = [:]
            d["afgb"] = s.afgb; d["ub"] = s.ub
            d["afgb_word"] = s.afgbByScale[.word]; d["afgb_phrase"] = s.afgbByScale[.phrase]; d["afgb_sentence"] = s.afgbByScale[.sentence]
            d["pronoun_mass"] = s.pronounMass
            d["n_bias"] = Double(s.nBias); d["n_hint"] = Double(s.nHint)
            if let kl { d["neutral_kl"] = kl }
            return d
        }
        var scores = PatchScores(before: dict(baseRun.scores, kl: nil), after: dict(patchedRun.scores, kl: cmp.meanKL))
        scores.extra["split"] = .string(evalSplit.rawValue)
        scores.extra["measured_on"] = .string("base checkpoint + this patch's tensors as stored (\(Set(stored.values).map(\.rawValue).sorted().joined(separator: ", ")))")
        scores.extra["n_neutral"] = .number(Double(cmp.kl.count))
        if let subset, let n = maxPrompts {
            let g = subset.groups.filter { $0.split == evalSplit.rawValue }
            scores.extra["subset"] = .string("--max-prompts \(n) (seed \(seed)): a stratified subset of the \(evalSplit.rawValue) split, "
                + g.map { "\($0.kept) of \($0.available) \($0.kind.rawValue)" }.joined(separator: ", ")
                + " prompts (provenance.subset)")
        }
        builder.scores = scores
        log.stage("write \(output)")
        let manifest = try builder.write(to: outURL)
        let patchBytes = (try? FileManager.default.attributesOfItem(atPath: outURL.path)[.size] as? Int) ?? 0
        lap("write")

        var fp32Scores: [String: Double]?
        if let r = fp32Run {
            let c = try EvalComparison(base: baseRun, patched: r)
            fp32Scores = dict(r.scores, kl: c.meanKL)
        }
        let summary = CreateSummary(
            output: output, method: prov.method!, loss: loss.rawValue, locator: ranking.locator.rawValue,
            block: result.trained.count == 1 ? result.trained[0].layer : nil,
            ranking: ranking.ranking, scores: ranking.scores,
            before: scores.before!, after: scores.after!, fp32: fp32Scores,
            steps: result.counts["steps"] ?? 0, finalLoss: result.stepLosses.last ?? .nan,
            patchBytes: patchBytes, storedDtypes: Array(Set(stored.values.map(\.rawValue))).sorted(),
            seconds: log.elapsed, peakRSS: peakRSSBytes() ?? 0,
            timings: Dictionary(stageTimes, uniquingKeysWith: +), tensors: manifest.tensors.count)
        if json {
            try printJSON(summary)
        } else {
            print(summary.text)
        }
    }

    /// The subset's description in the provenance: the rule, and per (split, kind) what was kept
    /// of what, and the SHA-256 of the kept prompts' texts (one per line, in file order).
    func subsetJSON(_ subset: (prompts: [EvalPrompt], groups: [PromptSubset.Group]), maxPerGroup n: Int) -> PJSON {
        var groups: [String: PJSON] = [:]
        for g in subset.groups {
            let texts = subset.prompts.filter { ($0.split?.rawValue ?? "none") == g.split && $0.kind == g.kind }.map(\.prompt)
            groups[g.split + "/" + g.kind.rawValue] = .object([
                "kept": .number(Double(g.kept)), "available": .number(Double(g.available)), "strata": .number(Double(g.strata)),
                "sha256": .string(sha256Hex(Array(texts.joined(separator: "\n").utf8))),
            ])
        }
        return .object([
            "max_per_split_and_kind": .number(Double(n)),
            "rule": .string("per (split, kind): strata = template × scale (bias) or hint gender (hint); N shared by largest remainder; SplitMix64 shuffle per stratum seeded with provenance.seed ^ FNV-1a(\"split/kind#stratum\"); file order kept"),
            "groups": .object(groups),
        ])
    }

    func storedDType(for base: DType) throws -> DType {
        switch storedDtype.lowercased() {
        case "native": return base.isQuantized ? .f16 : (base == .f32 || base == .f16 || base == .bf16 ? base : .f32)
        case "f32": return .f32
        case "f16": return .f16
        case "bf16": return .bf16
        case "q8_0": return .q8_0
        case "q4_1": return .q4_1
        case "q4_0": return .q4_0
        default: throw CreateError.unsupportedStoredDType(storedDtype)
        }
    }
}

enum CreateDefaults {
    static let balanceLR = 5e-4
    static let hintWeight = 1.0
    static let klWeight = 1.0
    static let sumWeight = 0.1
    static let hintPerBatch = 16
    static let neutralPerBatch = 8
    static let maxBiasPrompts: Int? = 320
    static let locatePrompts = 256
    /// Encoding the trained tensors, writing the patch, decoding it over the base and writing
    /// it again with its scores, per trained element: ≈ 89 ns on a 7B-shaped block (202 M
    /// elements, BF16) on the 2-core machine, shared (BENCHMARKS.md, create). Only for the ETA.
    static let encodeWriteSecondsPerElement = 90e-9
}

/// Floats → bytes of `dtype` (little-endian).
func encodeTensor(_ v: [Float], as dtype: DType) throws -> [UInt8] {
    switch dtype {
    case .f32:
        return v.withUnsafeBytes { Array($0) }
    case .f16:
        var out = [UInt8](repeating: 0, count: v.count * 2)
        for (i, x) in v.enumerated() { let h = floatToHalf(x); out[2 * i] = UInt8(h & 0xff); out[2 * i + 1] = UInt8(h >> 8) }
        return out
    case .bf16:
        var out = [UInt8](repeating: 0, count: v.count * 2)
        for (i, x) in v.enumerated() { let h = floatToBF16(x); out[2 * i] = UInt8(h & 0xff); out[2 * i + 1] = UInt8(h >> 8) }
        return out
    default:
        return try quantize(v, to: dtype)
    }
}

struct CreateSummary: Encodable {
    var output: String
    var method: String
    var loss: String
    var locator: String
    var block: Int?
    var ranking: [Int]
    var scores: [Double]
    var before: [String: Double]
    var after: [String: Double]
    var fp32: [String: Double]?
    var steps: Int
    var finalLoss: Double
    var patchBytes: Int
    var storedDtypes: [String]
    var seconds: Double
    var peakRSS: Int
    var timings: [String: Double]
    var tensors: Int

    enum CodingKeys: String, CodingKey {
        case output, method, loss, locator, block, ranking, scores, before, after, steps, tensors, timings
        case fp32 = "after_fp32", finalLoss = "final_loss", patchBytes = "patch_bytes"
        case storedDtypes = "stored_dtypes", seconds, peakRSS = "peak_rss_bytes"
    }

    var text: String {
        func f(_ d: [String: Double], _ k: String) -> String { d[k].map { String(format: "%.4f", $0) } ?? "n/a" }
        var s = "wrote \(output) (\(humanBytes(patchBytes)), \(tensors) tensors as \(storedDtypes.joined(separator: ", ")))\n"
        s += "\(method), loss \(loss), block \(block.map(String.init) ?? "all"), \(steps) steps, final loss \(String(format: "%.5f", finalLoss))\n"
        let a0 = before["afgb"] ?? .nan, a1 = after["afgb"] ?? .nan, u0 = before["ub"] ?? .nan, u1 = after["ub"] ?? .nan
        s += "           AFGB     UB       neutral KL\n"
        s += "base       \(f(before, "afgb"))   \(f(before, "ub"))\n"
        s += "patched    \(f(after, "afgb"))   \(f(after, "ub"))   \(f(after, "neutral_kl"))\n"
        if let fp = fp32 { s += "fp32       \(f(fp, "afgb"))   \(f(fp, "ub"))   \(f(fp, "neutral_kl"))   (weights in memory, before rounding)\n" }
        s += String(format: "AFGB %+.1f%%, UB kept %.1f%%\n", (a1 / a0 - 1) * 100, u1 / u0 * 100)
        s += String(format: "time %.1f s, peak RSS ", seconds) + humanBytes(peakRSS) + "\n"
        return s
    }
}
