import Foundation

/// Per-input-column activation statistics of every matrix product, for importance-aware quantization
/// (`qwen-quant calibrate`): for each weight (by name) the sum over all recorded rows of x[j]² for every
/// input column j, and the row count. While `Weight.recorder` is set, every `Weight.matmul` adds its
/// input rows here; the products themselves are unchanged. Only products computed on the thread that
/// created the recorder count (the text encoder runs its layers on the caller's thread), so other work in
/// the same process, such as tests running in parallel, does not leak into the statistics.
public final class ActivationRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var sums: [String: [Double]] = [:]
    private var rowCounts: [String: Int] = [:]
    private let owner = pthread_self()

    public init() {}

    public func record(_ name: String, _ x: UnsafePointer<Float>, rows m: Int, cols k: Int) {
        guard m > 0, k > 0, pthread_equal(pthread_self(), owner) != 0 else { return }
        lock.lock(); defer { lock.unlock() }
        var s = sums[name] ?? [Double](repeating: 0, count: k)
        guard s.count == k else { return }   // one name, one width (a sliced weight has its own name)
        s.withUnsafeMutableBufferPointer { acc in
            for r in 0..<m {
                let row = x + r * k
                for j in 0..<k { let v = Double(row[j]); acc[j] += v * v }
            }
        }
        sums[name] = s
        rowCounts[name, default: 0] += m
    }

    /// Every recorded weight: its mean square per input column and the number of rows seen, by name.
    public func meanSquares() -> [(name: String, values: [Float], rows: Int)] {
        lock.lock(); defer { lock.unlock() }
        return sums.keys.sorted().map { name in
            let n = Double(rowCounts[name] ?? 1)
            return (name, sums[name]!.map { Float($0 / n) }, rowCounts[name] ?? 0)
        }
    }
}
