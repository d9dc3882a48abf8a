import ArgumentParser

@main
struct LFTFPatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lftf-patch",
        abstract: "Locate the transformer block most tied to gender bias, fine-tune it, and ship the change as a delta patch.",
        subcommands: [InspectCommand.self, ConvertCommand.self, SynthCommand.self, NextCommand.self,
                      ApplyCommand.self, RevertCommand.self, VerifyCommand.self, InfoCommand.self, DiffCommand.self,
                      EvalCommand.self, LocateCommand.self, CreateCommand.self])
}
