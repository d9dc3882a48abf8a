import ArgumentParser
import Foundation
import LlamaModel
import ModelFormats
import Tokenizer

/// `lftf-patch next MODEL PROMPT`: the model's next-token distribution after a prompt.
struct NextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "next",
        abstract: "Show a prompt's token ids, the top next tokens and the probability of given words.",
        discussion: """
        The prompt is tokenized with the model's own tokenizer (BOS per the model's setting, no
        chat template) and run through the fp32 forward pass; probabilities are the softmax over
        the whole vocabulary after the prompt's last token.

        Each --word must be exactly one token (mind the leading space: " he"); otherwise the
        command fails and names the tokens the word encodes to.

        With --prompts FILE, every non-empty line of FILE is a prompt; all run batched, and with
        --json each prints one JSON object per line, in file order.

        Prompts that share a token prefix compute it once (the same probabilities up to float
        rounding, < 1e-6); --no-prefix-sharing runs every prompt's tokens on their own.

        JSON: {"token_ids": [...], "top": [{"id", "token", "p", "logit"}], "words": {" he": p}}
        """)

    @Argument(help: "An HF model directory or a .gguf file.")
    var model: String

    @Argument(help: "The prompt (omit with --prompts).")
    var prompt: String?

    @Option(name: .long, help: "How many of the most likely next tokens to show.")
    var top: Int = 5

    @Option(name: .customLong("word"), help: "A word whose next-token probability to show; repeatable; must be one token.")
    var words: [String] = []

    @Option(name: .customLong("prompts"), help: "A file of prompts, one per line (blank lines skipped).")
    var promptsFile: String?

    @Flag(help: "Print JSON (one object per prompt and line with --prompts).")
    var json = false

    @Flag(help: "Print timings (load, tokenize, forward, tokens/s) to stderr.")
    var timing = false

    @Flag(name: .customLong("no-prefix-sharing"), help: "Compute every prompt's tokens on their own (the plain forward), even where prompts share a prefix.")
    var noPrefixSharing = false

    @Option(name: .customLong("weight-cache"), help: "GiB of fp32 block weights to keep in memory; blocks past it are dequantized block by block on every pass.")
    var weightCacheGiB: Double = 4

    func validate() throws {
        guard top >= 0 else { throw ValidationError("--top must be 0 or more") }
        guard weightCacheGiB >= 0, weightCacheGiB < 1_000_000 else { throw ValidationError("--weight-cache must be a size in GiB, 0 or more") }
        switch (prompt, promptsFile) {
        case (nil, nil): throw ValidationError("give a PROMPT or --prompts FILE")
        case (.some, .some): throw ValidationError("give either a PROMPT or --prompts FILE, not both")
        default: break
        }
    }

    struct Top: Encodable { var id: Int; var token: String; var p: Double; var logit: Float }
    struct Result: Encodable {
        var token_ids: [Int]
        var top: [Top]
        var words: [String: Double]
    }

    func run() throws {
        let texts: [String]
        if let promptsFile {
            let data: String
            do { data = try String(contentsOf: URL(fileURLWithPath: promptsFile), encoding: .utf8) } catch {
                throw ValidationError("cannot read --prompts file \(promptsFile): \(error.localizedDescription)")
            }
            texts = data.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
                .map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "\r")) }
                .filter { !$0.isEmpty }
            guard !texts.isEmpty else { throw ValidationError("--prompts file \(promptsFile) has no prompts") }
        } else {
            texts = [prompt!]
        }

        let clock = ContinuousClock()
        let t0 = clock.now
        let checkpoint = try openRecovered(model)
        let tokenizer = try loadTokenizer(for: checkpoint)
        let t1 = clock.now
        // Words first: a word that is not one token fails before any compute.
        let wordIDs = try words.map { try Int(tokenizer.singleTokenID(for: $0)) }
        let ids = texts.map { tokenizer.encode($0).map(Int.init) }
        for (i, p) in ids.enumerated() where p.isEmpty {
            throw ValidationError("prompt \(i + 1) (\"\(texts[i])\") encodes to no tokens")
        }
        let t2 = clock.now
        let engine = try LlamaModel(checkpoint: checkpoint,
                                    options: .init(weightCacheBytes: Int(weightCacheGiB * Double(1 << 30)),
                                                  sharePrefixes: !noPrefixSharing))
        let t3 = clock.now
        let cpu3 = processCPUSeconds()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let out = FileHandle.standardOutput
        try engine.forEachLastToken(prompts: ids) { i, logits, _ in
            let logZ = NextToken.logSumExp(logits)
            let p = { (l: Float) -> Double in Foundation.exp(Double(l) - logZ) }
            let best = NextToken.top(logits, k: top)
            var r = Result(token_ids: ids[i], top: best.map {
                Top(id: $0.id, token: tokenizer.tokenString(Int32($0.id)), p: p($0.logit), logit: $0.logit)
            }, words: [:])
            for (w, id) in zip(words, wordIDs) { r.words[w] = p(logits[id]) }
            if json {
                var line = try encoder.encode(r)
                line.append(0x0A)
                out.write(line)
            } else {
                out.write(Data(text(r, prompt: texts[i], tokenizer: tokenizer).utf8))
            }
        }
        if timing {
            let t4 = clock.now
            func s(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
            let tokens = ids.reduce(0) { $0 + $1.count }
            let fwd = s(t4 - t3), fwdCPU = processCPUSeconds() - cpu3
            // tokens/s counts the prompts' tokens answered; the rows actually computed are shown
            // next to it (fewer when prompts share prefixes).
            FileHandle.standardError.write(Data(String(
                format: "timing: open+tokenizer %.3f s, tokenize %.3f s, load weights %.3f s, forward+output %.3f s (%d prompts, %d tokens, %.0f tokens/s; %d token rows computed, %.0f rows/s; forward CPU time %.3f s, all threads)\n",
                s(t1 - t0), s(t2 - t1), s(t3 - t2), fwd, ids.count, tokens, Double(tokens) / fwd,
                engine.lastRowCounts.computed, Double(engine.lastRowCounts.computed) / fwd, fwdCPU).utf8))
        }
    }

    func text(_ r: Result, prompt: String, tokenizer: BPETokenizer) -> String {
        func quoted(_ s: String) -> String {
            var e = s.debugDescription   // escapes newlines, quotes, control characters
            if e.hasPrefix("\"") && e.hasSuffix("\"") { e = String(e.dropFirst().dropLast()) }
            return "\"\(e)\""
        }
        var lines = ["prompt: \(quoted(prompt))",
                     "token ids: \(r.token_ids.map(String.init).joined(separator: " "))",
                     "tokens: \(r.token_ids.map { quoted(tokenizer.tokenString(Int32($0))) }.joined(separator: " "))"]
        if !r.top.isEmpty {
            lines.append("top \(r.top.count):")
            let width = r.top.map { quoted($0.token).count }.max() ?? 0
            for (rank, t) in r.top.enumerated() {
                let tok = quoted(t.token).padding(toLength: max(width, 1), withPad: " ", startingAt: 0)
                lines.append(String(format: "  %2d  %6d  ", rank + 1, t.id) + tok
                             + String(format: "  p=%.6f  logit=%.4f", t.p, t.logit))
            }
        }
        for w in words {
            lines.append("P(\(quoted(w))) = " + String(format: "%.6f", r.words[w] ?? 0))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// CPU time (user + system) of the whole process, all threads, in seconds.
func processCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
