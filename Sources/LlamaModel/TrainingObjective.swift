// The contract between the fine-tuning loop (this module) and the debias objectives (Debias).

/// A loss read from one sequence's next-token logits at its last position.
public protocol LastTokenObjective: AnyObject {
    /// The loss of training example `example` given its logits (V). When `dlogits` is non-nil,
    /// OVERWRITES it with dLoss/dlogits (V) for this one example (the loop scales by 1/batch).
    func evaluate(logits: UnsafePointer<Float>, vocabSize: Int, example: Int,
                  dlogits: UnsafeMutablePointer<Float>?) -> Double
}
