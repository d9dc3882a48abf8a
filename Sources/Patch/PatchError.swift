// Every way a patch operation can fail, one case per problem, each with a message a user can
// act on. `isCheckFailure` separates "a check said no" (exit 1) from bad input and I/O (exit 2).
import Foundation
import ModelFormats

public enum PatchError: Error, CustomStringConvertible, Equatable {
    // MARK: Reading a patch file
    /// The file does not start with "LFTFPTCH".
    case notAPatch(path: String)
    /// The file is shorter or longer than its header says (truncated or with trailing bytes).
    case sizeMismatch(path: String, expected: Int, actual: Int)
    /// The trailing SHA-256 does not match the bytes: corrupted or tampered with.
    case checksumMismatch(path: String)
    /// Written by a newer lftf-patch (format major version above the one this reader knows).
    case unsupportedVersion(found: UInt32, supported: UInt32)
    /// The manifest lists a feature this reader does not implement.
    case unsupportedFeature(String)
    /// The manifest JSON is malformed or inconsistent.
    case malformedManifest(String)
    /// A tensor name that could be used to escape a directory, or is otherwise unsafe.
    case unsafeName(String)
    /// A tensor stream uses an encoding this reader does not know.
    case unsupportedEncoding(tensor: String, encoding: String)
    /// A compressed frame does not decode to what the manifest promises.
    case corruptFrame(tensor: String, detail: String)

    // MARK: Checks against a checkpoint (exit code 1)
    /// The checkpoint lacks a tensor the patch touches.
    case missingTensor(String)
    /// A touched tensor is neither the patch's base nor its result (names the tensor).
    case baseMismatch(tensor: String, expected: String, actual: String)
    /// The checkpoint's architecture or format differs from the patch's base.
    case wrongCheckpoint(String)
    /// The whole-checkpoint fingerprint differs from the one the patch was made on.
    case fingerprintMismatch(expected: String, actual: String)
    /// Every touched tensor already holds the patched bytes.
    case alreadyApplied
    /// Revert asked on a checkpoint that holds the base bytes.
    case notApplied
    /// Some touched tensors are base, some patched: the checkpoint is in neither state.
    case mixedState(base: [String], patched: [String], neither: [String])

    // MARK: Building a patch
    case invalidReplacement(tensor: String, detail: String)
    case emptyPatch

    // MARK: Files, journal, I/O
    case io(path: String, operation: String, errno: Int32)
    case shortRead(path: String, offset: Int, wanted: Int, got: Int)
    case locked(path: String)
    case corruptJournal(path: String, detail: String)
    /// A committed v2 journal rolls back by decoding the patch it was made with; the patch is
    /// missing or a different file.
    case journalNeedsPatch(journal: String, patch: String, sha256: String, detail: String)
    case zstd(String)
    case layoutChange(String)
    case unsupported(String)

    /// True for "a check that says no": not applicable, not applied, neither (exit code 1).
    public var isCheckFailure: Bool {
        switch self {
        case .missingTensor, .baseMismatch, .wrongCheckpoint, .fingerprintMismatch,
             .alreadyApplied, .notApplied, .mixedState:
            return true
        default:
            return false
        }
    }

    public var description: String {
        switch self {
        case .notAPatch(let p): return "\(p) is not an .lftfpatch file (bad magic)"
        case .sizeMismatch(let p, let e, let a):
            return a < e ? "\(p) is truncated: the header says \(e) bytes, the file has \(a)"
                         : "\(p) has \(a - e) unexpected trailing bytes (expected \(e) bytes)"
        case .checksumMismatch(let p): return "\(p) is corrupted: its SHA-256 checksum does not match its contents; download it again"
        case .unsupportedVersion(let f, let s):
            return "patch format version \(f) is newer than this lftf-patch supports (\(s)); upgrade lftf-patch"
        case .unsupportedFeature(let f): return "the patch requires feature '\(f)', which this lftf-patch does not implement; upgrade lftf-patch"
        case .malformedManifest(let d): return "malformed patch manifest: \(d)"
        case .unsafeName(let n): return "the patch names an unsafe tensor \(String(reflecting: n)) (path separators, '..', or control characters); refusing it"
        case .unsupportedEncoding(let t, let e): return "tensor \(t) uses encoding '\(e)', which this lftf-patch does not know; upgrade lftf-patch"
        case .corruptFrame(let t, let d): return "patch data for \(t) is corrupt: \(d)"
        case .missingTensor(let n): return "the checkpoint has no tensor \(n), which the patch changes: not this patch's base"
        case .baseMismatch(let t, let e, let a):
            return "tensor \(t) does not match the patch's base (SHA-256 \(a.prefix(16))…, expected \(e.prefix(16))…): wrong base checkpoint; nothing was written"
        case .wrongCheckpoint(let d): return "not this patch's base: \(d)"
        case .fingerprintMismatch(let e, let a):
            return "checkpoint fingerprint \(a.prefix(16))… differs from the patch's base \(e.prefix(16))… (the touched tensors match, other tensors differ); pass --ignore-fingerprint to apply anyway"
        case .alreadyApplied: return "the patch is already applied to this checkpoint"
        case .notApplied: return "the patch is not applied to this checkpoint (it holds the base tensors)"
        case .mixedState(let b, let p, let n):
            var parts: [String] = []
            if !b.isEmpty { parts.append("base: \(b.joined(separator: ", "))") }
            if !p.isEmpty { parts.append("patched: \(p.joined(separator: ", "))") }
            if !n.isEmpty { parts.append("neither: \(n.joined(separator: ", "))") }
            return "the checkpoint is neither the patch's base nor its result (\(parts.joined(separator: "; ")))"
        case .invalidReplacement(let t, let d): return "replacement for \(t): \(d)"
        case .emptyPatch: return "no tensor differs from the base: nothing to patch"
        case .io(let p, let op, let e): return "\(op) \(p): \(String(cString: strerror(e)))"
        case .shortRead(let p, let o, let w, let g): return "\(p): wanted \(w) bytes at offset \(o), got \(g) (file truncated?)"
        case .locked(let p): return "another lftf-patch process is working on \(p); try again when it has finished"
        case .corruptJournal(let p, let d): return "journal \(p) is corrupt (\(d)); the checkpoint may need a fresh copy"
        case .journalNeedsPatch(let j, let p, let sha, let d):
            return "an interrupted apply/revert left \(j); rolling it back needs its patch \(p) (SHA-256 \(sha)), which cannot be read (\(d)). Put that patch back at \(p) and run the command again; the checkpoint is untouched until then"
        case .zstd(let d): return "zstd: \(d)"
        case .layoutChange(let d): return d
        case .unsupported(let d): return d
        }
    }
}
