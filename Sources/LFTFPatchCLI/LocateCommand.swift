import ArgumentParser
import Debias
import Foundation
import LlamaModel
import ModelFormats
import Tokenizer

// `lftf-patch locate MODEL`: the first stage of `create` on its own — rank the blocks by BMI
// (or by BMI contrast against neutral text) over the training split's bias prompts.

struct LocateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "locate",
        abstract: "Rank the model's blocks by how much they rewrite the residual stream on gendered prompts (BMI).",
        discussion: """
        BMI_i = 1 − cos(h_i, h_{i+1}) at the last token, averaged over the bias prompts of the \
        training split (LFTF, Qin et al. 2025). --locator contrast (the default) subtracts the \
        same quantity on neutral prompts, because small models' first block rewrites the \
        embedding whatever the text. Prints the ranking and a bar chart; --chart writes an SVG.
        """)

    @OptionGroup var common: ModelDataOptions

    @Option(help: "Split whose prompts are used.")
    var split: Split = .train

    @Option(help: "Use at most this many bias prompts (evenly spaced).")
    var maxPrompts: Int?

    @Option(help: "Write the ranking as an SVG bar chart here.")
    var chart: String?

    @Flag(help: "Print JSON on stdout.")
    var json = false

    func run() throws {
        let ckpt = try openModelCheckpoint(common.model)
        let tokenizer = try loadTokenizer(for: ckpt)
        let model = try LlamaModel(checkpoint: ckpt)
        let prompts = try Dataset.select(common.loadPrompts().prompts, split: split)
        var bias = prompts.filter { $0.kind == .bias }
        if let m = maxPrompts, m < bias.count, m > 0 { bias = (0..<m).map { bias[$0 * bias.count / m] } }
        let neutral = prompts.filter { $0.kind == .neutral }
        let enc = { (p: EvalPrompt) in tokenizer.encode(p.prompt).map(Int.init) }
        let start = Date()
        let r = try model.locate(biasPrompts: bias.map(enc), neutralPrompts: neutral.map(enc), locator: common.locator)
        let seconds = Date().timeIntervalSince(start)
        if let chart {
            try Data(r.svg(title: "Block ranking (\(r.locator.rawValue)), \(URL(fileURLWithPath: common.model).lastPathComponent)").utf8)
                .write(to: URL(fileURLWithPath: chart))
        }
        if json {
            struct Out: Encodable {
                var locator: String, top: Int, ranking: [Int], scores: [Double], bmi: [Double], bmi_neutral: [Double]?
                var n_bias: Int, n_neutral: Int, seconds: Double
            }
            try printJSON(Out(locator: r.locator.rawValue, top: r.top, ranking: r.ranking, scores: r.scores, bmi: r.bmi,
                              bmi_neutral: r.neutralBMI, n_bias: r.biasPromptCount, n_neutral: r.neutralPromptCount,
                              seconds: seconds))
        } else {
            print("locator \(r.locator.rawValue): \(r.biasPromptCount) bias prompts" +
                  (r.locator == .contrast ? ", \(r.neutralPromptCount) neutral prompts" : "") +
                  String(format: " (%.1f s)", seconds))
            print(r.barChart())
            print(r.rankingTable(), terminator: "")
            print("fine-tune block: \(r.top)")
        }
    }
}
