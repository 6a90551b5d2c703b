import Foundation
import Kernels

/// A source for tests and synthetic weights: every request is recorded, and served either from a
/// closure giving checkpoint-layout (hub) tensors, transformed here exactly as the converter would
/// store them and packed in `scheme`, or, without a closure, as zeros that cost no memory.
public final class RecordingTensorSource: TensorSource, @unchecked Sendable {
    /// (shape, f32 values) of a checkpoint tensor by its full name, or nil when it is missing.
    public typealias Fetch = (String) throws -> (shape: [Int], values: [Float])?

    final class Log: @unchecked Sendable {
        var requests: [TensorRequest] = []
        let lock = NSLock()
        func add(_ r: TensorRequest) { lock.lock(); requests.append(r); lock.unlock() }
    }

    let log: Log
    let fetch: Fetch?
    public let scheme: qk_scheme
    public let group: Int32
    public let path: String

    /// - Parameters:
    ///   - scheme, group: how matrices are packed; vectors are always f32.
    ///   - fetch: checkpoint tensors; nil serves zeros of the requested shapes.
    public convenience init(scheme: qk_scheme = QK_F32, group: Int32 = 0, fetch: Fetch? = nil) {
        self.init(log: Log(), fetch: fetch, scheme: scheme, group: group, path: "")
    }

    /// Serves a checkpoint component's tensors (read whole, in f32: for small checkpoints).
    public convenience init(checkpoint: CheckpointComponent, scheme: qk_scheme = QK_F32, group: Int32 = 0) {
        self.init(scheme: scheme, group: group) { name in
            guard checkpoint.contains(name) else { return nil }
            return (try checkpoint.info(name).shape, try checkpoint.floats(name))
        }
    }

    init(log: Log, fetch: Fetch?, scheme: qk_scheme, group: Int32, path: String) {
        self.log = log
        self.fetch = fetch
        self.scheme = scheme
        self.group = group
        self.path = path
    }

    /// Every request, in the order made (repeats included).
    public var requests: [TensorRequest] {
        log.lock.lock(); defer { log.lock.unlock() }
        return log.requests
    }

    private func source(_ name: String, _ shape: [Int]) throws -> [Float] {
        guard let (found, values) = try fetch!(name) else {
            throw QuantError.tensor(name: name, message: "missing from the checkpoint (expected shape \(shape))")
        }
        guard found == shape, values.count == shape.reduce(1, *) else {
            throw QuantError.tensor(name: name, message: "expected shape \(shape), found \(found)")
        }
        return values
    }

    public func matrix(_ name: String, _ layout: MatrixLayout) throws -> Weight {
        let r = TensorRequest(name: fullName(name), kind: .matrix(layout))
        log.add(r)
        let rows = layout.packShape[0], cols = layout.packShape[1]
        guard fetch != nil else { return try Weight.placeholder(r.packName, rows: rows, cols: cols) }
        let v = try source(r.name, layout.sourceShape)
        guard let g = layout.gather() else {
            return try makeWeight(r.packName, v, rows: rows, cols: cols, scheme: scheme, group: group)
        }
        // The converter's row transform: out[o, j] = src[o, g[j]].
        let srcLen = v.count / max(rows, 1)
        var out = [Float](repeating: 0, count: rows * cols)
        for o in 0..<rows { for j in 0..<cols { out[o * cols + j] = v[o * srcLen + Int(g[j])] } }
        return try makeWeight(r.packName, out, rows: rows, cols: cols, scheme: scheme, group: group)
    }

    public func vector(_ name: String, shape: [Int]) throws -> [Float] {
        let r = TensorRequest(name: fullName(name), kind: .vector(shape))
        log.add(r)
        guard fetch != nil else { return [Float](repeating: 0, count: shape.reduce(1, *)) }
        return try source(r.name, shape)
    }

    public func prefix(_ name: String) -> RecordingTensorSource {
        RecordingTensorSource(log: log, fetch: fetch, scheme: scheme, group: group, path: fullName(name))
    }
}
