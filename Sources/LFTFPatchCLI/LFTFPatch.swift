import ArgumentParser

@main
struct LFTFPatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lftf-patch",
        abstract: "Locate the transformer block most tied to gender bias, fine-tune it, and ship the change as a delta patch.",
        discussion: """
        A model is an HF directory (config.json + safetensors, single or
        sharded) or a GGUF file.

        The main job:
          create base/ -o fix.lftfpatch   locate + fine-tune + write the patch
          apply base/ fix.lftfpatch       in place, crash-safe; or --output DIR
          revert base/ fix.lftfpatch      byte-exact undo
          verify base/ [fix.lftfpatch]    base, patched, or neither, and why

        Exit codes:
          0  success
          1  a check ran and says no (not applicable, not applied, neither)
          2  bad input or an I/O error (bad arguments, a malformed file, ...)
        """,
        subcommands: [CreateCommand.self, ApplyCommand.self, RevertCommand.self, VerifyCommand.self,
                      InfoCommand.self, DiffCommand.self, EvalCommand.self, LocateCommand.self,
                      NextCommand.self, InspectCommand.self, ConvertCommand.self, SynthCommand.self])
}
