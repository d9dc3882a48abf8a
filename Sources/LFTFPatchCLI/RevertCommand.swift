import ArgumentParser
import Foundation
import ModelFormats
import Patch

struct RevertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revert",
        abstract: "Undo a patch in place: the byte-exact inverse of apply.",
        discussion: """
            Checks that every touched tensor holds the patched bytes, then restores the base bytes \
            with the same rollback journal as apply.

            Exit codes: 0 reverted; 1 the patch is not applied (or the model is neither base nor \
            patched); 2 bad input or I/O error.
            """)

    @Argument(help: "The patched checkpoint: a GGUF file or an HF safetensors directory.")
    var model: String

    @Argument(help: "The .lftfpatch file that was applied.")
    var patch: String

    @Flag(name: .long, help: "Revert even if the whole-checkpoint fingerprint differs from the patch's result.")
    var ignoreFingerprint = false

    @Flag(name: .shortAndLong, help: "No progress messages on stderr.")
    var quiet = false

    func run() throws {
        let start = Date()
        try patchCommand {
            let p = try PatchFile(url: URL(fileURLWithPath: patch))
            let ckpt = try openRecovered(model, quiet: quiet)
            try PatchApplier.revert(p, from: ckpt, options: ApplyOptions(ignoreFingerprint: ignoreFingerprint,
                                                                       progress: quiet ? nil : { printErr($0) }))
            print("reverted \(patch) from \(model) (\(p.manifest.tensors.count) tensors) in \(elapsed(start))")
        }
    }
}
