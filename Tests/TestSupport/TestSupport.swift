import Foundation

/// Where the sample model (SmolLM2-135M-Instruct Q4_1 GGUF) is cached by `samples/fetch-model.sh`.
public enum SampleModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    public static var cacheDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["LFTF_CACHE"] { return URL(fileURLWithPath: dir) }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/lftf-patch")
    }

    /// The GGUF path, or nil when it has not been fetched.
    public static var ggufURL: URL? {
        let u = cacheDirectory.appendingPathComponent(fileName)
        return FileManager.default.fileExists(atPath: u.path) ? u : nil
    }
}

/// The repository root (for samples/, Formats/, ../shared/).
public let repositoryRoot: URL = {
    var u = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { u.deleteLastPathComponent() }
    return u
}()

/// ../shared/reference next to the checkout.
public let sharedDirectory: URL = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")

import XCTest

public struct SampleModelMissing: Error, CustomStringConvertible {
    public var description: String { "sample model not fetched: run samples/fetch-model.sh" }
}

/// The sample GGUF. Skips the test on a developer machine without it; under CI
/// (where `scripts/test.sh` fetched it) a missing model is a failure, never a skip.
public func requireSampleModel() throws -> URL {
    if let u = SampleModel.ggufURL { return u }
    if ProcessInfo.processInfo.environment["CI"] != nil { throw SampleModelMissing() }
    throw XCTSkip("sample model not fetched: run samples/fetch-model.sh")
}
