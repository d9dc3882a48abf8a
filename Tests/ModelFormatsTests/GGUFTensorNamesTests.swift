import XCTest
@testable import ModelFormats

final class GGUFTensorNamesTests: XCTestCase {
    func testRolesRoundTripBothSchemes() {
        var roles: [TensorRole] = [.tokenEmbedding, .outputNorm, .output]
        for i in [0, 7, 29, 123] {
            roles += [.attnNorm(i), .ffnNorm(i), .q(i), .k(i), .v(i), .o(i), .qBias(i), .kBias(i), .vBias(i), .gate(i), .up(i), .down(i)]
        }
        for r in roles {
            XCTAssertEqual(TensorNames.role(hfName: TensorNames.hf(r)), r)
            XCTAssertEqual(TensorNames.role(ggufName: TensorNames.gguf(r)), r)
            XCTAssertEqual(TensorNames.ggufName(forHF: TensorNames.hf(r)), TensorNames.gguf(r))
        }
        XCTAssertEqual(TensorNames.hf(.q(3)), "model.layers.3.self_attn.q_proj.weight")
        XCTAssertEqual(TensorNames.gguf(.o(3)), "blk.3.attn_output.weight")
        XCTAssertEqual(TensorNames.hfName(forGGUF: "blk.12.ffn_down.weight"), "model.layers.12.mlp.down_proj.weight")
        XCTAssertEqual(TensorNames.hf(.ffnNorm(1)), "model.layers.1.post_attention_layernorm.weight")
        for bad in ["blk.x.attn_q.weight", "blk.01.attn_q.weight", "blk.-1.attn_q.weight", "blk.1.attn_q",
                    "model.layers.1.self_attn.rotary_emb.inv_freq", "blk..attn_q.weight", "rope_freqs.weight"] {
            XCTAssertNil(TensorNames.role(name: bad), bad)
        }
    }

    /// llama.cpp's permute on a tiny example worked by hand: 2 heads of dim 4, one column.
    /// HF rows per head: [r0 r1 | r2 r3] (halves) → GGUF [r0 r2 r1 r3] (pairs).
    func testQKPermutationByHand() throws {
        let hf: [Float] = [0, 1, 2, 3, 10, 11, 12, 13]
        let g = try QKPermutation.hfToGGUF(hf, rows: 8, heads: 2)
        XCTAssertEqual(g, [0, 2, 1, 3, 10, 12, 11, 13])
        XCTAssertEqual(try QKPermutation.ggufToHF(g, rows: 8, heads: 2), hf)
        // head_dim 6: [a0 a1 a2 | b0 b1 b2] → [a0 b0 a1 b1 a2 b2]; rows of 2 columns move whole.
        let hf2: [UInt16] = (0..<12).map(UInt16.init)  // rows (0,1) (2,3) ... (10,11)
        let g2 = try QKPermutation.hfToGGUF(hf2, rows: 6, heads: 1)
        XCTAssertEqual(g2, [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11])
        XCTAssertEqual(try QKPermutation.ggufToHF(g2, rows: 6, heads: 1), hf2)
        XCTAssertThrowsError(try QKPermutation.hfToGGUF(hf, rows: 8, heads: 3))
        XCTAssertThrowsError(try QKPermutation.hfToGGUF(hf, rows: 8, heads: 8))  // head dim 1 is odd
    }

    func testPermutationRoundTripLarge() throws {
        let rows = 192, cols = 5
        let w = (0..<(rows * cols)).map { Float($0) }
        let g = try QKPermutation.hfToGGUF(w, rows: rows, heads: 3)
        XCTAssertNotEqual(g, w)
        XCTAssertEqual(try QKPermutation.ggufToHF(g, rows: rows, heads: 3), w)
    }
}
