// The version-2 (sector) journal: an in-place apply or revert of a float-rans patch interrupted
// with any mix of old and new 512-byte sectors rolls back exactly; it needs its patch (kept
// next to the journal) and says so clearly without it; an uncommitted journal is dropped; a
// version-1 journal still recovers; old float-diff patches still apply (with the v1 journal).
import Crypto
import XCTest
import ModelFormats
@testable import Patch

final class SectorJournalTests: XCTestCase {
    /// Commits a v2 journal for `ckpt` as an in-place apply (or revert) would, then overwrites
    /// a random half of the touched sectors with the bytes of `target`: the state after a crash
    /// (or a power loss) in the middle of the writes.
    func tear(_ p: PatchFile, _ ckpt: TestCheckpoint, revert: Bool, target: Data, seed: UInt64) throws -> Int {
        let items = try PatchApplier.items(p, ckpt)
        XCTAssertTrue(PatchApplier.usesSectorJournal(items))
        let checked = try PatchApplier.checkRegions(items)
        try PatchApplier.commitSectorJournal(p, ckpt, items, checked, revert: revert)
        let fd = try FileDescriptor(ckpt.files[0].path, flags: O_RDWR)
        var r = SplitMix(state: seed)
        var written = 0
        for it in items {
            var s = it.info.offset / 512 * 512
            while s < it.info.offset + it.info.byteCount {
                let lo = max(s, it.info.offset), hi = min(s + 512, it.info.offset + it.info.byteCount)
                if r.next() & 1 == 0 {
                    try fd.write(Array(target[lo..<hi]), at: lo)
                    written += 1
                }
                s += 512
            }
        }
        return written
    }

    func testTornApplyAndRevertRollBackExactly() throws {
        let f = try PatchFixture()
        try f.builder(chunkElements: 1024, floatsOnly: true).write(to: f.patchURL)   // several frames per tensor
        let p = try PatchFile(url: f.patchURL)
        XCTAssertTrue(p.manifest.tensors.allSatisfy { $0.forward.encoding == "float-rans" })
        let base0 = try f.fileBytes(f.baseDir), tuned = try f.tunedFloatsOnly()
        XCTAssertNotEqual(base0, tuned)
        for seed in UInt64(1)...4 {
            // An apply torn at sector granularity.
            XCTAssertGreaterThan(try tear(p, f.base(), revert: false, target: tuned, seed: seed), 10)
            XCTAssertNotEqual(try f.fileBytes(f.baseDir), base0)
            XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .rolledBack(regions: 4))
            XCTAssertEqual(try f.fileBytes(f.baseDir), base0, "rolled-back apply must give the base back")
            XCTAssertFalse(FileIO.exists(Journal.url(for: f.baseDir)))
            XCTAssertFalse(FileIO.exists(Journal.patchURL(for: f.baseDir)))
            // A revert torn the same way, from the patched checkpoint.
            try PatchApplier.apply(p, to: f.base())
            XCTAssertEqual(try f.fileBytes(f.baseDir), tuned)
            _ = try tear(p, f.base(), revert: true, target: base0, seed: seed + 100)
            XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .rolledBack(regions: 4))
            XCTAssertEqual(try f.fileBytes(f.baseDir), tuned, "rolled-back revert must give the patched checkpoint back")
            try PatchApplier.revert(p, from: f.base())
            XCTAssertEqual(try f.fileBytes(f.baseDir), base0)
        }
    }

    func testRecoveryNeedsItsPatchAndSaysSo() throws {
        let f = try PatchFixture()
        try f.builder(floatsOnly: true).write(to: f.patchURL)
        let p = try PatchFile(url: f.patchURL)
        let base0 = try f.fileBytes(f.baseDir), tuned = try f.tunedFloatsOnly()
        _ = try tear(p, f.base(), revert: false, target: tuned, seed: 9)
        // Both copies gone: a clear error, nothing touched.
        let moved = f.dir.appendingPathComponent("moved.lftfpatch")
        try FileManager.default.moveItem(at: f.patchURL, to: moved)
        try FileManager.default.removeItem(at: Journal.patchURL(for: f.baseDir))
        let torn = try f.fileBytes(f.baseDir)
        XCTAssertThrowsError(try PatchRecovery.recover(f.baseDir)) { e in
            guard case .journalNeedsPatch(_, let path, let sha, _) = e as? PatchError else { return XCTFail("\(e)") }
            XCTAssertEqual(path, f.patchURL.standardizedFileURL.path)
            XCTAssertEqual(sha, p.checksum)
            XCTAssertTrue("\(e)".contains("Put that patch back"), "\(e)")
        }
        XCTAssertEqual(try f.fileBytes(f.baseDir), torn)
        // A different file at that path is not taken for it.
        try Data(try f.builder(chunkElements: 2048, floatsOnly: true).serialized()).write(to: f.patchURL)
        XCTAssertThrowsError(try PatchRecovery.recover(f.baseDir)) {
            guard case .journalNeedsPatch = $0 as? PatchError else { return XCTFail("\($0)") }
        }
        // The right patch back at its path: recovery completes.
        try FileManager.default.removeItem(at: f.patchURL)
        try FileManager.default.moveItem(at: moved, to: f.patchURL)
        XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .rolledBack(regions: 4))
        XCTAssertEqual(try f.fileBytes(f.baseDir), base0)
    }

    func testUncommittedJournalIsDroppedAndNothingChanges() throws {
        let f = try PatchFixture()
        try f.builder(floatsOnly: true).write(to: f.patchURL)
        let p = try PatchFile(url: f.patchURL)
        let ckpt = try f.base()
        let items = try PatchApplier.items(p, ckpt)
        let checked = try PatchApplier.checkRegions(items)
        let base0 = try f.fileBytes(f.baseDir)
        try PatchApplier.commitSectorJournal(p, ckpt, items, checked, revert: false)
        // Cut the journal anywhere: not committed, so the data files were never written.
        let j = Journal.url(for: f.baseDir)
        let full = try Data(contentsOf: j)
        for cut in [0, 7, 20, full.count / 2, full.count - 1] {
            try full.prefix(cut).write(to: j)
            XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .discarded, "cut at \(cut)")
            XCTAssertFalse(FileIO.exists(j)); XCTAssertFalse(FileIO.exists(Journal.patchURL(for: f.baseDir)))
            XCTAssertEqual(try f.fileBytes(f.baseDir), base0)
            try full.write(to: j)
        }
        // A flipped bit in a committed journal: its checksum fails, so it is not committed either.
        var bad = [UInt8](full); bad[40] ^= 1
        try Data(bad).write(to: j)
        XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .discarded)
        // A stale patch link without a journal (killed between the two) is removed.
        XCTAssertEqual(link(f.patchURL.path, Journal.patchURL(for: f.baseDir).path), 0)
        XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .clean)
        XCTAssertFalse(FileIO.exists(Journal.patchURL(for: f.baseDir)))
    }

    func testVersion1JournalStillRecovers() throws {
        let f = try PatchFixture()
        let ckpt = try f.base()
        let base0 = try f.fileBytes(f.baseDir)
        let file = ckpt.files[0]
        let t = ckpt.tensors[3]
        let saved = Array(base0[t.offset..<(t.offset + t.byteCount)])
        // A v1 journal as earlier versions wrote it: header, saved bytes, commit record.
        let regions = [Journal.Region(file: file.lastPathComponent, offset: t.offset, length: t.byteCount,
                                      sha256: Array(SHA256.hash(data: saved)))]
        let header = Journal.header(regions)
        try Data(header + saved + Journal.commitMagic + Array(SHA256.hash(data: header))).write(to: Journal.url(for: f.baseDir))
        let fd = try FileDescriptor(file.path, flags: O_RDWR)
        try fd.write([UInt8](repeating: 0x55, count: t.byteCount / 2), at: t.offset)   // half written
        XCTAssertEqual(try PatchRecovery.recover(f.baseDir), .rolledBack(regions: 1))
        XCTAssertEqual(try f.fileBytes(f.baseDir), base0)
    }

    func testOldFloatDiffPatchStillAppliesAndReverts() throws {
        let f = try PatchFixture()
        let b = try f.builder(chunkElements: 1024, floatsOnly: true)
        b.floatEncoding = .floatDiff   // as lftf-patch wrote BF16 patches before float-rans
        try b.write(to: f.patchURL)
        let p = try PatchFile(url: f.patchURL)
        XCTAssertTrue(p.manifest.tensors.allSatisfy { $0.forward.encoding == "float-diff" })
        XCTAssertFalse(PatchApplier.usesSectorJournal(try PatchApplier.items(p, f.base())), "float-diff uses the v1 journal")
        let base0 = try f.fileBytes(f.baseDir), tuned = try f.tunedFloatsOnly()
        try PatchApplier.apply(p, to: f.base())
        XCTAssertEqual(try f.fileBytes(f.baseDir), tuned)
        try PatchApplier.revert(p, from: f.base())
        XCTAssertEqual(try f.fileBytes(f.baseDir), base0)
    }
}
