import Foundation
import XCTest
import ModelFormats
@testable import Tokenizer
import TestSupport

/// A JSON fixture from Tests/TokenizerTests/Fixtures.
func fixture(_ name: String) throws -> Any {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures") else {
        throw XCTSkip("fixture \(name).json missing from the test bundle")
    }
    return try JSONSerialization.jsonObject(with: Data(contentsOf: url))
}

struct GoldenCase { var text: String; var ids: [Int32] }

func smollmGoldens() throws -> [GoldenCase] {
    let root = try XCTUnwrap(try fixture("smollm2_goldens") as? [String: Any])
    let cases = try XCTUnwrap(root["cases"] as? [[String: Any]])
    return try cases.map {
        GoldenCase(text: try XCTUnwrap($0["text"] as? String),
                   ids: try XCTUnwrap($0["ids"] as? [Int]).map { Int32($0) })
    }
}

/// ../shared/reference/smollm2-135m-q4_1.json (llama.cpp's token ids for the reference prompts).
func referenceJSON() throws -> [String: Any] {
    var url = sharedDirectory.appendingPathComponent("reference/smollm2-135m-q4_1.json")
    if !FileManager.default.fileExists(atPath: url.path) {
        url = URL(fileURLWithPath: "/work/shared/reference/smollm2-135m-q4_1.json")
    }
    guard FileManager.default.fileExists(atPath: url.path) else {
        if ProcessInfo.processInfo.environment["CI"] != nil { throw ReferenceMissing(path: url.path) }
        throw XCTSkip("shared/reference not found")
    }
    return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

/// The sample model's tokenizer metadata.
func sampleMetadata() throws -> [String: GGUFValue] {
    _ = try requireSampleModel()
    return try SampleTokenizer.metadata()
}

/// Shared across tests: building it once keeps the suite fast.
enum SampleTokenizer {
    private static let lock = NSLock()
    private static var md: [String: GGUFValue]?
    private static var tok: BPETokenizer?

    static func metadata() throws -> [String: GGUFValue] {
        lock.lock(); defer { lock.unlock() }
        if let md { return md }
        let m = try loadMetadata()
        md = m
        return m
    }

    static func tokenizer() throws -> BPETokenizer {
        let m = try sampleMetadata()
        lock.lock(); defer { lock.unlock() }
        if let tok { return tok }
        let t = try BPETokenizer(ggufMetadata: m)
        tok = t
        return t
    }

    private static func loadMetadata() throws -> [String: GGUFValue] {
        try GGUFCheckpoint(url: try requireSampleModel()).metadata
    }
}

struct ReferenceMissing: Error, CustomStringConvertible {
    var path: String
    var description: String { "reference file \(path) missing (CI needs ../shared next to the checkout)" }
}
