import ArgumentParser
import Foundation
import ModelFormats
import Patch

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show everything in a patch's header: base identity, tensors, encodings, provenance, scores.",
        discussion: "The patch's checksum is verified first. Exit codes: 0 ok; 2 not a patch, corrupt, or from a newer version.")

    @Argument(help: "The .lftfpatch file.")
    var patch: String

    @Flag(name: .long, help: "Print the manifest as JSON (with the file's size and checksum).")
    var json = false

    struct JSONInfo: Encodable {
        var file: String
        var size: Int
        var checksum: String
        var manifest: PatchManifest
    }

    func run() throws {
        let p = try PatchFile(url: URL(fileURLWithPath: patch))
        let m = p.manifest
        if json { return try printJSON(JSONInfo(file: patch, size: p.size, checksum: p.checksum, manifest: m)) }
        var raw = 0, compressed = 0
        for t in m.tensors { raw += t.patched.byteCount ?? 0; compressed += t.forward.compressedSize + (t.reverse?.compressedSize ?? 0) }
        print("patch        \(patch) (\(humanBytes(p.size)), format version \(m.formatVersion), written by \(m.writer))")
        print("checksum     \(p.checksum)")
        print("base         \(m.base.format.rawValue) \(m.base.architecture), \(m.base.tensorCount) tensors, fingerprint \(m.base.fingerprint)")
        print("result       fingerprint \(m.patched.fingerprint)")
        print("tensors      \(m.tensors.count), \(humanBytes(raw)) raw → \(humanBytes(compressed)) (\(String(format: "%.2f", 100 * Double(compressed) / Double(max(raw, 1))))%)")
        for t in m.tensors {
            let change = t.base.dtype == t.patched.dtype ? t.base.dtype.rawValue : "\(t.base.dtype.rawValue) → \(t.patched.dtype.rawValue)"
            let size = t.forward.compressedSize + (t.reverse?.compressedSize ?? 0)
            print("  \(t.name)  \(change) \(t.patched.shape)  \(t.forward.encoding)\(t.reverse != nil ? "+\(t.reverse!.encoding) reverse" : "")  \(humanBytes(size))")
            print("      base \(t.base.sha256)")
            print("      new  \(t.patched.sha256)")
        }
        if let pr = m.provenance {
            print("provenance")
            if let v = pr.method { print("  method           \(v)") }
            if let v = pr.locatedBlock { print("  located block    \(v)") }
            if let v = pr.bmiRanking { print("  BMI ranking      \(v.prefix(8).map { "\($0.block) (\(String(format: "%.4g", $0.bmi)))" }.joined(separator: ", "))\(v.count > 8 ? ", …" : "")") }
            if let v = pr.loss { print("  loss             \(v)\(pr.finalLoss.map { String(format: ", final %.6g", $0) } ?? "")") }
            if let v = pr.hyperparameters { print("  hyperparameters  \(compactJSON(v))") }
            if let v = pr.seed { print("  seed             \(v)") }
            if let v = pr.toolVersion { print("  tool             \(v)") }
            if let v = pr.data { print("  data             \(v.map { "\($0.name)\($0.count.map { " (\($0))" } ?? "")" }.joined(separator: ", "))") }
            if let v = pr.createdAt { print("  created          \(v)") }
            for (k, v) in pr.extra.sorted(by: { $0.key < $1.key }) { print("  \(k)  \(compactJSON(v))") }
        }
        if let s = m.scores {
            print("scores")
            let keys = Set((s.before ?? [:]).keys).union((s.after ?? [:]).keys).sorted()
            for k in keys {
                let b = s.before?[k].map { String(format: "%.4f", $0) } ?? "-", a = s.after?[k].map { String(format: "%.4f", $0) } ?? "-"
                print("  \(k.padding(toLength: 16, withPad: " ", startingAt: 0)) \(b) → \(a)")
            }
            for (k, v) in s.extra.sorted(by: { $0.key < $1.key }) { print("  \(k)  \(compactJSON(v))") }
        }
        for (k, v) in m.extra.sorted(by: { $0.key < $1.key }) { print("\(k)  \(compactJSON(v))") }
    }
}

func compactJSON<T: Encodable>(_ v: T) -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? e.encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
}
