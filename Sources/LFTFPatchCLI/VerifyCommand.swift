import ArgumentParser
import Foundation
import ModelFormats
import Patch

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Say whether a model is a patch's base, its result, or neither, tensor by tensor; without a patch, check the model's integrity.",
        discussion: """
            With PATCH: hashes every tensor the patch touches and reports base, patched or neither \
            for each, and the model's fingerprint. Exit 0 if the model is wholly base or wholly \
            patched (or what --expect names), 1 otherwise.

            Without PATCH: checks every tensor's size, bounds and overlap, reads every byte, \
            counts NaN/infinite floats and prints the fingerprint patches are made against. \
            Exit 0 intact, 1 problems found.

            Exit 2: bad input or I/O error.
            """)

    @Argument(help: "The checkpoint: a GGUF file or an HF safetensors directory.")
    var model: String

    @Argument(help: "A .lftfpatch file (optional).")
    var patch: String?

    @Option(name: .long, help: "Exit 1 unless the model is in this state: base or patched.")
    var expect: TensorPatchState?

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "No progress messages on stderr.")
    var quiet = false

    func validate() throws {
        if expect == .neither { throw ValidationError("--expect takes base or patched") }
        if expect != nil && patch == nil { throw ValidationError("--expect needs a patch") }
    }

    func run() throws {
        try patchCommand {
            let ckpt = try openRecovered(model, quiet: quiet)
            guard let patch else { return try integrity(ckpt) }
            let p = try PatchFile(url: URL(fileURLWithPath: patch))
            let r = try PatchApplier.verify(p, ckpt)
            if json {
                try printJSON(r)
            } else {
                for t in r.tensors {
                    print("\(t.state.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(t.name)\(t.detail.map { "  (\($0))" } ?? "")")
                }
                print("fingerprint \(r.fingerprint) (\(r.fingerprintMatches.map { "the patch's \($0 == .base ? "base" : "result")" } ?? "neither the patch's base nor its result"))")
                print("\(model) is \(r.state == .base ? "the patch's base (not patched)" : r.state == .patched ? "patched" : "neither the patch's base nor its result")")
            }
            if let expect, r.state != expect { throw Exit.checkFailed }
            if r.state == .neither { throw Exit.checkFailed }
        }
    }

    func integrity(_ ckpt: any Checkpoint) throws {
        let r = try Integrity.check(ckpt, progress: quiet ? nil : { printErr($0) })
        if json {
            try printJSON(r)
        } else {
            print("\(r.format.rawValue) \(r.architecture), \(r.tensorCount) tensors in \(r.files.count) file\(r.files.count == 1 ? "" : "s")")
            print("fingerprint \(r.fingerprint)")
            for p in r.problems { print("problem: \(p)") }
            print(r.ok ? "intact" : "\(r.problems.count) problem\(r.problems.count == 1 ? "" : "s") found")
        }
        if !r.ok { throw Exit.checkFailed }
    }
}

extension TensorPatchState: ExpressibleByArgument {}
