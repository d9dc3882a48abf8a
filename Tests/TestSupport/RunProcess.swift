import Foundation

/// What a finished child process left behind.
public struct ProcessOutput {
    public var status: Int32
    /// True when it ended by a signal (e.g. kill -9), not by exiting.
    public var killed: Bool
    public var stdout: String
    public var stderr: String
}

/// Runs `executable` with `arguments` (and `environment`, or this process's when nil) to the end,
/// capturing stdout and stderr. Used by the CLI tests to run the built binary and tools like sha256sum.
public func runProcess(_ executable: URL, _ arguments: [String],
                       environment: [String: String]? = nil) throws -> ProcessOutput {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out; p.standardError = err
    try p.run()
    // Read before waiting so a large output cannot fill the pipe and stall the child.
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return ProcessOutput(status: p.terminationStatus, killed: p.terminationReason == .uncaughtSignal,
                         stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}
