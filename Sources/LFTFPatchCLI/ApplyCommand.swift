import ArgumentParser
import Foundation
import ModelFormats
import Patch

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply a patch to its base checkpoint, in place (crash-safe) or into a copy.",
        discussion: """
            Checks the SHA-256 of every tensor the patch touches first; if any differs, nothing is \
            written and the tensor is named. In place, the touched bytes are saved to a rollback \
            journal next to the checkpoint before anything is overwritten: if apply is killed at any \
            point, the next lftf-patch command on the checkpoint rolls it back to the base. Memory \
            stays at a few frames whatever the model size.

            Exit codes: 0 applied; 1 not applicable (wrong base, already applied, fingerprint \
            differs); 2 bad input or I/O error (malformed/corrupt patch, disk full, ...).
            """)

    @Argument(help: "The base checkpoint: a GGUF file or an HF safetensors directory.")
    var base: String

    @Argument(help: "The .lftfpatch file.")
    var patch: String

    @Option(name: .long, help: "Write a patched copy into this directory (created if missing) and leave the base untouched.")
    var output: String?

    @Flag(name: .long, help: "Apply even if the whole-checkpoint fingerprint differs from the patch's base (the touched tensors must still match).")
    var ignoreFingerprint = false

    @Flag(name: .shortAndLong, help: "No progress messages on stderr.")
    var quiet = false

    func run() throws {
        let start = Date()
        try patchCommand {
            let p = try PatchFile(url: URL(fileURLWithPath: patch))
            let ckpt = try openRecovered(base, quiet: quiet)
            let options = ApplyOptions(ignoreFingerprint: ignoreFingerprint, progress: quiet ? nil : { printErr($0) })
            if let output {
                try PatchApplier.applyCopy(p, to: ckpt, output: URL(fileURLWithPath: output), options: options)
                print("wrote a patched copy of \(base) to \(output) (\(p.manifest.tensors.count) tensors) in \(elapsed(start))")
            } else {
                try PatchApplier.apply(p, to: ckpt, options: options)
                print("applied \(patch) to \(base) (\(p.manifest.tensors.count) tensors) in \(elapsed(start))")
            }
        }
    }
}

// MARK: - Shared by apply, revert, verify, info and diff

/// Runs a patch operation: a `PatchError` that is a check saying no (not applicable, not
/// applied, neither) prints its message and exits 1; every other error propagates (exit 2).
func patchCommand(_ body: () throws -> Void) throws {
    // A file-size limit (RLIMIT_FSIZE) must fail the write with EFBIG, not kill the process.
    signal(SIGXFSZ, SIG_IGN)
    do {
        try body()
    } catch let e as PatchError where e.isCheckFailure {
        printErr("error: \(e)")
        throw Exit.checkFailed
    }
}

func elapsed(_ start: Date) -> String { String(format: "%.2f s", Date().timeIntervalSince(start)) }
