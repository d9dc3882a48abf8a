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

    // Development stand-in until the GGUF reader lands: a JSON dump of the metadata.
    private static func loadMetadata() throws -> [String: GGUFValue] {
        let url = URL(fileURLWithPath: "/tmp/smollm_md.json")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("no metadata dump") }
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: [String: Any]])
        var out: [String: GGUFValue] = [:]
        for (k, v) in obj {
            if let s = v["string"] as? String { out[k] = .string(s) }
            else if let b = v["bool"] as? Bool { out[k] = .bool(b) }
            else if let u = v["uint"] as? Int { out[k] = .uint32(UInt32(u)) }
            else if let a = v["strings"] as? [String] { out[k] = .array(.string, a.map { .string($0) }) }
            else if let a = v["ints"] as? [Int] { out[k] = .array(.int32, a.map { .int32(Int32($0)) }) }
        }
        return out
    }
}

struct ReferenceMissing: Error, CustomStringConvertible {
    var path: String
    var description: String { "reference file \(path) missing (CI needs ../shared next to the checkout)" }
}
