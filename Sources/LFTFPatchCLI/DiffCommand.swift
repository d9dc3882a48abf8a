import ArgumentParser
import Foundation
import ModelFormats
import Patch

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Make a patch from two checkpoints of the same architecture (e.g. a block fine-tuned elsewhere).",
        discussion: """
            Every tensor must exist in both with the same shape. By default only the attention and \
            MLP weights of transformer blocks (q, k, v, o, gate, up, down) may differ; anything else \
            (embeddings, norms, output) is refused unless --allow-other.

            Exit codes: 0 written; 1 other tensors differ, or nothing differs; 2 bad input or I/O error.
            """)

    @Argument(help: "The base checkpoint.")
    var base: String

    @Argument(help: "The tuned checkpoint (same format and tensor names).")
    var tuned: String

    @Option(name: .shortAndLong, help: "Where to write the .lftfpatch file.")
    var output: String

    @Flag(name: .long, help: "Also patch tensors outside the blocks' attention/MLP weights.")
    var allowOther = false

    @Flag(name: .shortAndLong, help: "No progress messages on stderr.")
    var quiet = false

    func run() throws {
        let start = Date()
        try patchCommand {
            let b = try openRecovered(base, quiet: quiet), t = try openRecovered(tuned, quiet: quiet)
            guard b.format == t.format, b.config.architecture == t.config.architecture else {
                throw PatchError.wrongCheckpoint("\(base) is \(b.format.rawValue) \(b.config.architecture), \(tuned) is \(t.format.rawValue) \(t.config.architecture)")
            }
            let bn = Set(b.tensors.map(\.name)), tn = Set(t.tensors.map(\.name))
            guard bn == tn else {
                let only = bn.symmetricDifference(tn).sorted().prefix(5).joined(separator: ", ")
                throw PatchError.wrongCheckpoint("the checkpoints have different tensors (\(only))")
            }
            var trainable: [String: Int] = [:]
            for i in 0..<b.config.numLayers { for r in TensorRole.trainable(block: i) { trainable[b.name(for: r)] = i } }

            let builder = PatchBuilder(base: b)
            var other: [String] = [], blocks = Set<Int>()
            for bi in b.tensors {
                let ti = t.tensorInfo(named: bi.name)!
                guard ti.shape == bi.shape else {
                    throw PatchError.wrongCheckpoint("\(bi.name) is \(bi.shape) in \(base) but \(ti.shape) in \(tuned)")
                }
                let x = try b.rawBytes(bi), y = try t.rawBytes(ti)
                if ti.dtype == bi.dtype && x.elementsEqual(y) { continue }
                if let blk = trainable[bi.name] { blocks.insert(blk) } else { other.append(bi.name) }
                try builder.replace(bi.name, dtype: ti.dtype, shape: ti.shape, bytes: Array(y))
            }
            if !other.isEmpty && !allowOther {
                printErr("error: tensors outside the blocks' attention/MLP weights differ: \(other.prefix(8).joined(separator: ", "))\(other.count > 8 ? ", …" : ""); pass --allow-other to include them")
                throw Exit.checkFailed
            }
            if blocks.isEmpty && other.isEmpty {
                printErr("error: \(base) and \(tuned) are identical: nothing to patch")
                throw Exit.checkFailed
            }
            builder.provenance = Provenance(method: "diff", locatedBlock: blocks.count == 1 ? blocks.first : nil,
                                            toolVersion: PatchFormat.writer)
            if !quiet { printErr("encoding \(blocks.count) block\(blocks.count == 1 ? "" : "s")\(other.isEmpty ? "" : " and \(other.count) other tensors")") }
            let m = try builder.write(to: URL(fileURLWithPath: output))
            let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
            let raw = m.tensors.reduce(0) { $0 + ($1.patched.byteCount ?? 0) }
            print("wrote \(output): \(m.tensors.count) tensors, \(humanBytes(raw)) → \(humanBytes(size)) (\(String(format: "%.2f", 100 * Double(size) / Double(max(raw, 1))))%) in \(elapsed(start))")
        }
    }
}
