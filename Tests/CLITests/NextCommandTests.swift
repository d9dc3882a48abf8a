import Foundation
import XCTest
import TestSupport

// `lftf-patch next` run as a user runs it, on the sample model, against the "exact" reference
// figures in ../shared/reference/smollm2-135m-q4_1.json (tokenizer + engine end to end).

private struct Reference: Decodable {
    struct Top: Decodable { var id: Int; var token: String; var p: Double; var logit: Double }
    struct Exact: Decodable { var p_he: Double; var p_she: Double; var top5: [Top] }
    struct Prompt: Decodable { var prompt: String; var token_ids: [Int]; var exact: Exact }
    var prompts: [Prompt]
}

private struct NextOutput: Decodable {
    struct Top: Decodable { var id: Int; var token: String; var p: Double; var logit: Double }
    var token_ids: [Int]
    var top: [Top]
    var words: [String: Double]
}

final class NextCommandTests: XCTestCase {
    private func reference() throws -> Reference {
        let candidates = [sharedDirectory, repositoryRoot.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")]
        for d in candidates {
            let u = d.appendingPathComponent("reference/smollm2-135m-q4_1.json")
            if FileManager.default.fileExists(atPath: u.path) { return try JSONDecoder().decode(Reference.self, from: Data(contentsOf: u)) }
        }
        if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("reference not found next to the checkout") }
        throw XCTSkip("reference smollm2-135m-q4_1.json not found")
    }

    private func binary() throws -> URL {
        var dirs: [URL] = []
        if let exe = Bundle.main.executableURL { dirs.append(exe.deletingLastPathComponent()) }
        for b in Bundle.allBundles { dirs.append(b.bundleURL.deletingLastPathComponent()) }
        dirs += [repositoryRoot.appendingPathComponent(".build/release"), repositoryRoot.appendingPathComponent(".build/debug")]
        for d in dirs {
            let u = d.appendingPathComponent("lftf-patch")
            if FileManager.default.isExecutableFile(atPath: u.path) { return u }
        }
        throw XCTSkip("lftf-patch binary not built")
    }

    private func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let r = try runProcess(try binary(), args)
        return (r.status, r.stdout, r.stderr)
    }

    private func check(_ o: NextOutput, _ r: Reference.Prompt, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(o.token_ids, r.token_ids, "token ids of '\(r.prompt)'", file: file, line: line)
        XCTAssertEqual(o.top.map(\.id), r.exact.top5.map(\.id), "top-5 of '\(r.prompt)'", file: file, line: line)
        XCTAssertEqual(o.top.map(\.token), r.exact.top5.map(\.token), file: file, line: line)
        for (a, b) in zip(o.top, r.exact.top5) {
            XCTAssertEqual(a.p, b.p, accuracy: 1e-3, file: file, line: line)
            XCTAssertEqual(a.logit, b.logit, accuracy: 1e-2, file: file, line: line)
        }
        XCTAssertEqual(o.words[" he"] ?? -1, r.exact.p_he, accuracy: 1e-3, file: file, line: line)
        XCTAssertEqual(o.words[" she"] ?? -1, r.exact.p_she, accuracy: 1e-3, file: file, line: line)
    }

    func testOnePromptJSON() throws {
        let model = try requireSampleModel()
        let ref = try reference()
        let r = try run(["next", model.path, ref.prompts[0].prompt, "--top", "5", "--word", " he", "--word", " she", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let o = try JSONDecoder().decode(NextOutput.self, from: Data(r.out.utf8))
        check(o, ref.prompts[0])
    }

    func testPromptsFileOneJSONObjectPerLine() throws {
        let model = try requireSampleModel()
        let ref = try reference()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("next-prompts-\(getpid()).txt")
        try (ref.prompts.map(\.prompt).joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let r = try run(["next", model.path, "--prompts", file.path, "--word", " he", "--word", " she", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.count, ref.prompts.count)
        for (l, p) in zip(lines, ref.prompts) {
            check(try JSONDecoder().decode(NextOutput.self, from: Data(l.utf8)), p)
        }
    }

    /// Prompts sharing prefixes (the default computes them once) give the plain pass's answers,
    /// in file order; --timing says how many token rows were computed.
    func testPrefixSharingSameAsPlain() throws {
        let model = try requireSampleModel()
        let ref = try reference()
        let base = ref.prompts.map(\.prompt)
        let texts = base + base.map { $0 + " and" } + base.map { $0 + " then she said" } + [base[0]]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("next-shared-\(getpid()).txt")
        try (texts.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let args = ["next", model.path, "--prompts", file.path, "--word", " he", "--word", " she", "--json", "--timing"]
        let shared = try run(args), plain = try run(args + ["--no-prefix-sharing"])
        XCTAssertEqual(shared.status, 0, shared.err)
        XCTAssertEqual(plain.status, 0, plain.err)
        let a = try shared.out.split(separator: "\n").map { try JSONDecoder().decode(NextOutput.self, from: Data($0.utf8)) }
        let b = try plain.out.split(separator: "\n").map { try JSONDecoder().decode(NextOutput.self, from: Data($0.utf8)) }
        XCTAssertEqual(a.count, texts.count)
        XCTAssertEqual(b.count, texts.count)
        for (i, (x, y)) in zip(a, b).enumerated() {
            XCTAssertEqual(x.token_ids, y.token_ids)
            if i < ref.prompts.count { check(x, ref.prompts[i]) }
            XCTAssertEqual(x.top.map(\.id), y.top.map(\.id), "top-5 of prompt \(i)")
            for (s, t) in zip(x.top, y.top) { XCTAssertEqual(s.p, t.p, accuracy: 1e-5) }
            for w in [" he", " she"] { XCTAssertEqual(x.words[w] ?? -1, y.words[w] ?? -2, accuracy: 1e-5) }
        }
        // "N token rows computed": fewer than the prompts' tokens with sharing, equal without.
        func counts(_ err: String) -> (tokens: Int, rows: Int)? {
            let re = try! Regex(#"(\d+) tokens, \d+ tokens/s; (\d+) token rows computed"#)
            guard let m = err.firstMatch(of: re), let t = m[1].substring, let r = m[2].substring else { return nil }
            return (Int(t)!, Int(r)!)
        }
        let cs = try XCTUnwrap(counts(shared.err), shared.err), cp = try XCTUnwrap(counts(plain.err), plain.err)
        XCTAssertEqual(cs.tokens, cp.tokens)
        XCTAssertEqual(cp.rows, cp.tokens)
        XCTAssertLessThan(cs.rows, cs.tokens)
    }

    /// The same prompts on the F32 safetensors conversion: HF tokenizer.json, HF names,
    /// rotate-half RoPE; identical token ids and the same reference figures.
    func testConvertedSafetensorsMatchesReference() throws {
        let model = try requireSampleModel()
        let ref = try reference()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("next-st-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("smollm2-f32")
        let c = try run(["convert", model.path, "--to", "safetensors", "--dtype", "f32", "-o", out.path, "--quiet"])
        XCTAssertEqual(c.status, 0, c.err)
        let file = dir.appendingPathComponent("prompts.txt")
        try (ref.prompts.map(\.prompt).joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let r = try run(["next", out.path, "--prompts", file.path, "--word", " he", "--word", " she", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.count, ref.prompts.count)
        for (l, p) in zip(lines, ref.prompts) {
            check(try JSONDecoder().decode(NextOutput.self, from: Data(l.utf8)), p)
        }
    }

    func testTextOutput() throws {
        let model = try requireSampleModel()
        let r = try run(["next", model.path, "The nurse smiled because", "--word", " he"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("token ids: 504 12996 18628 975"), r.out)
        XCTAssertTrue(r.out.contains("\" she\""), r.out)
        XCTAssertTrue(r.out.contains("P(\" he\") = 0.09"), r.out)
    }

    func testMultiTokenWordFailsNamingTokens() throws {
        let model = try requireSampleModel()
        let r = try run(["next", model.path, "The nurse smiled because", "--word", " lifeguard"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.out.isEmpty)
        XCTAssertTrue(r.err.contains("lifeguard"), r.err)
        XCTAssertTrue(r.err.contains("life") && r.err.contains("guard"), r.err)
    }

    func testNeedsPromptOrFile() throws {
        let model = try requireSampleModel()
        XCTAssertEqual(try run(["next", model.path]).status, 2)
        XCTAssertEqual(try run(["next", model.path, "x", "--prompts", "/nonexistent"]).status, 2)
        XCTAssertEqual(try run(["next", model.path, "--prompts", "/nonexistent/file"]).status, 2)
        XCTAssertEqual(try run(["next", "/nonexistent/model.gguf", "hello"]).status, 2)
    }
}
