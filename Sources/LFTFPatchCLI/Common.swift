import ArgumentParser
import Foundation
import ModelFormats
import Patch

// Shared CLI plumbing: exit codes, error reporting, --json printing, human-readable sizes.
//
// Exit codes (README "Exit codes"):
//   0  success
//   1  a check ran and says no (verify: not the expected model, ...)
//   2  bad input or an I/O error: unparsable arguments, a malformed or missing file, ...

enum Exit {
    static let success = ExitCode(0)
    /// A check that ran and says no.
    static let checkFailed = ExitCode(1)
    /// Bad input, a malformed file, or an I/O error.
    static let badInput = ExitCode(2)
}

extension LFTFPatch {
    /// The one place errors become exit codes: argument errors and every thrown error exit 2
    /// with a message on stderr; commands signal "the check says no" by throwing `Exit.checkFailed`.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let e as ExitCode {
            Foundation.exit(e.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {                       // --help, --version
                exit(withError: error)
            }
            let message = code == .validationFailure ? fullMessage(for: error) : "error: \(error)"
            FileHandle.standardError.write(Data((message + "\n").utf8))
            Foundation.exit(Exit.badInput.rawValue)
        }
    }
}

/// Writes to stderr (progress, warnings), never mixed into stdout's results.
func printErr(_ s: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((s + terminator).utf8))
}

/// Prints `value` as pretty JSON with sorted keys (stable output for scripts and tests).
func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try e.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// 1536 → "1.5 KiB"; binary units, one decimal.
func humanBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), u = 0
    while v >= 1024, u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f", v) + " " + units[u]
}

/// Parses "500MB", "2GB", "1.5GiB", "123" (bytes). Decimal units are powers of 1000, as in
/// transformers' `max_shard_size`; the *iB forms are powers of 1024.
func parseByteSize(_ s: String) -> Int? {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("TIB", 1_099_511_627_776),
                                     ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("K", 1e3), ("M", 1e6), ("G", 1e9), ("B", 1)]
    for (suffix, mult) in units where t.hasSuffix(suffix) {
        guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v > 0 else { return nil }
        return Int(exactly: (v * mult).rounded()) ?? nil
    }
    guard let v = Int(t), v > 0 else { return nil }
    return v
}

/// Finishes or rolls back an interrupted apply/revert on the checkpoint, then opens it.
func openRecovered(_ path: String, quiet: Bool = false) throws -> any Checkpoint {
    let url = URL(fileURLWithPath: path)
    if case .rolledBack(let n) = try PatchRecovery.recover(url), !quiet {
        printErr("rolled back an interrupted apply/revert on \(path) (\(n) tensors restored)")
    }
    return try openCheckpoint(url)
}
