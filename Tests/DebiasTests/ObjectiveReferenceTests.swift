import Foundation
import XCTest
import ModelFormats
import LlamaModel
import TestSupport
@testable import Debias

/// Gradients of one prompt's loss w.r.t. blocks 0 and 29 of the sample model against the
/// PyTorch float64 reference in ../shared/reference/smollm2-135m-layers.json (Frobenius norms;
/// GGUF stores q/k rows permuted, which leaves norms unchanged). This checks the whole chain:
/// head + final norm backward, 29 blocks of activation-only backward, block 0's weight gradients.
final class ObjectiveReferenceTests: XCTestCase {
    struct Entry: Decodable { var frobenius: Double }
    struct Prompt: Decodable {
        var prompt: String
        var token_ids: [Int]
        var block_cos_distance: [Double]
        var gradients: [String: [String: AnyDecodable]]?
    }
    struct AnyDecodable: Decodable {
        var number: Double?, norm: Double?
        init(from d: Decoder) throws {
            let c = try d.singleValueContainer()
            if let x = try? c.decode(Double.self) { number = x }
            else if let e = try? c.decode(Entry.self) { norm = e.frobenius }
        }
    }
    struct Reference: Decodable { var prompts: [Prompt] }

    func testGradientNormsMatchPyTorchReference() throws {
        let url = try requireSampleModel()
        let data = try Data(contentsOf: sharedDirectory.appendingPathComponent("reference/smollm2-135m-layers.json"))
        let ref = try JSONDecoder().decode(Reference.self, from: data)
        let p = ref.prompts[0]
        XCTAssertEqual(p.prompt, "The nurse smiled because")
        let model = try LlamaModel(checkpoint: GGUFCheckpoint(url: url))
        let hf = ["q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                  "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"]
        for kind in [ObjectiveKind.paper, .balance] {
            let g = try XCTUnwrap(p.gradients?[kind.rawValue])
            let tuner = try FineTuner(model: model, examples: [p.token_ids], settings: FineTuneSettings(blocks: [0, 29]))
            // balance without the sum term is exactly (log P(he) − log P(she))², the reference's "balance"
            let obj = DebiasObjective(kind: kind, weights: ObjectiveWeights(hint: 0, neutralKL: 0, sum: 0),
                                      heID: 384, sheID: 1041, roles: [.bias])
            let (loss, grads) = try tuner.lossAndGradients([0], objective: obj)
            XCTAssertEqual(loss, try XCTUnwrap(g["loss"]?.number), accuracy: 1e-4 * max(1, loss), "\(kind) loss")
            var worst = 0.0
            for (gi, block) in [0, 29].enumerated() {
                for (short, long) in hf {
                    let want = try XCTUnwrap(g["model.layers.\(block).\(long).weight"]?.norm)
                    let role: TensorRole = ["q": .q(block), "k": .k(block), "v": .v(block), "o": .o(block),
                                            "gate": .gate(block), "up": .up(block), "down": .down(block)][short]!
                    let got = grads[gi].frobenius(role)
                    let rel = abs(got - want) / want
                    worst = max(worst, rel)
                    XCTAssertEqual(got, want, accuracy: 1e-4 * want, "\(kind) block \(block) \(short): \(got) vs \(want)")
                }
            }
            print("\(kind): loss \(loss), worst relative norm difference \(worst)")
        }
        try tuner0Cleanup(model)
    }

    func tuner0Cleanup(_ model: LlamaModel) throws {
        for b in model.overriddenBlocks { try model.overrideBlock(b, with: nil) }
    }

    /// BMI (1 − cos at the last token) per block on the reference's eight prompts.
    func testBMIMatchesPyTorchReference() throws {
        let url = try requireSampleModel()
        let data = try Data(contentsOf: sharedDirectory.appendingPathComponent("reference/smollm2-135m-layers.json"))
        let ref = try JSONDecoder().decode(Reference.self, from: data)
        let model = try LlamaModel(checkpoint: GGUFCheckpoint(url: url))
        let bmi = try model.blockModificationIndex(prompts: ref.prompts.map(\.token_ids))
        var worst = 0.0
        for i in 0..<30 {
            let want = ref.prompts.map { $0.block_cos_distance[i] }.reduce(0, +) / Double(ref.prompts.count)
            worst = max(worst, abs(bmi[i] - want))
            XCTAssertEqual(bmi[i], want, accuracy: 1e-5, "block \(i)")
        }
        print("BMI: worst absolute difference \(worst); block 0 \(bmi[0])")
        let r = BlockRanking(locator: .bmi, bmi: bmi, neutralBMI: nil, biasPromptCount: 8, neutralPromptCount: 0)
        XCTAssertEqual(r.top, 0)
    }
}
